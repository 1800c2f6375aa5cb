"""The built distributions carry what a user and the sdist's own tests need."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import redpool

ROOT = Path(__file__).resolve().parents[1]


def build(tmp_path: Path) -> tuple[Path, Path]:
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return next(tmp_path.glob("*.tar.gz")), next(tmp_path.glob("*.whl"))


def test_the_sdist_holds_everything_its_tests_use_and_the_wheel_the_scripts(
    tmp_path: Path,
) -> None:
    sdist, wheel = build(tmp_path)
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    tracked = subprocess.run(
        ["git", "ls-files", "src", "lua", "tests", "examples"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert set(tracked) <= names, set(tracked) - names
    assert {"LICENSE", "README.md", "CHANGELOG.md", "Makefile"} <= names

    with zipfile.ZipFile(wheel) as whl:
        files = set(whl.namelist())
        metadata = next(whl.read(n).decode() for n in files if n.endswith("/METADATA"))
    lua = {p.name for p in (ROOT / "lua").glob("*.lua")}
    assert {f"redpool/lua/{name}" for name in lua} <= files
    assert "redpool/py.typed" in files
    assert f"Version: {redpool.__version__}" in metadata
    assert "License-Expression: MIT" in metadata

"""The README's quickstart runs as written."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


async def test_the_quickstart_runs(redis_url: str, capsys: pytest.CaptureFixture[str]):
    code = re.search(r"## Quickstart\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None
    namespace: dict[str, object] = {"__name__": "readme"}
    exec(compile(code.group(1), "README.md", "exec"), namespace)
    await namespace["main"](redis_url)  # type: ignore[operator]
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if not line.startswith("20")] == [
        "start alice: hello",
        "['alice']",
        "stop alice",
    ]


async def test_the_tasks_quickstart_runs(redis_url: str, capsys: pytest.CaptureFixture[str]):
    text = README.read_text()
    code = re.search(r"## Tasks quickstart\n\n.*?```python\n(.*?)```", text, re.S)
    assert code is not None
    module = types.ModuleType("readme_tasks")  # dataclasses look their module up
    sys.modules[module.__name__] = module
    try:
        exec(compile(code.group(1), "README.md", "exec"), module.__dict__)
        await module.main(redis_url)
    finally:
        del sys.modules[module.__name__]
    out = capsys.readouterr().out.splitlines()
    assert [line for line in out if not line.startswith("20")] == [
        "charged 9.5 for order 7 (attempt 1)",
        "Status.SUCCEEDED",
    ]

"""The README's quickstart runs as written."""

from __future__ import annotations

import re
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

"""The runnable examples run as documented (against this test run's Redis)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    ("example", "expected"),
    [
        ("ticker.py", "-> node"),
        ("schedule.py", "running now: ['sports']"),
        ("notify.py", "session-42 got 'bye'"),
        ("tasks.py", "retried: cat.png stored on attempt 3"),
        ("control.py", "result: exported 150 rows (resumed)"),
        ("recurring.py", "cleanup ended after 3 runs (3 ok)"),
    ],
)
def test_example_runs(example: str, expected: str, redis_url: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / example)],
        env={**os.environ, "REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout, done.stdout


def test_the_demo_runs(redis_url: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")],
        env={**os.environ, "REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "every job stopped, every process exited {0}; done" in done.stdout, done.stdout

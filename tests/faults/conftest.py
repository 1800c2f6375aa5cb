"""Fault-suite fixtures: a report of measured recovery times printed after the run (the
``proxy`` fixture is in tests/conftest.py: the tasks tests use it too)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

_REPORT: list[str] = []


@pytest.fixture
def report() -> Callable[[str], None]:
    """Record a line (a measured time) for the summary printed at the end of the run."""
    return _REPORT.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _REPORT:
        terminalreporter.section("redpool fault suite: measured recovery")
        for line in _REPORT:
            terminalreporter.write_line(line)

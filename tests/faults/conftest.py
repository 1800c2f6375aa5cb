"""Fault-suite fixtures: a TCP proxy between a node and Redis, and a report of measured
recovery times printed after the run."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.proxy import Proxy
from tests.redis_server import RedisServer

_REPORT: list[str] = []


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[Proxy]:
    """A proxy to the test's Redis (``proxy.url``): blackholes, loses replies, cuts."""
    proxy = Proxy(redis_server.port)
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
def report() -> Callable[[str], None]:
    """Record a line (a measured time) for the summary printed at the end of the run."""
    return _REPORT.append


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _REPORT:
        terminalreporter.section("redpool fault suite: measured recovery")
        for line in _REPORT:
            terminalreporter.write_line(line)

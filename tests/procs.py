"""Driving tests/proc.py processes from a test, and reading what they did."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Member:
    """One pool member process."""

    def __init__(self, proc: asyncio.subprocess.Process, node_id: str) -> None:
        self.proc = proc
        self.node_id = node_id
        self.pid = proc.pid
        self.killed_at: int | None = None

    @classmethod
    async def start(
        cls, url: str, pool: str, events: Path, *args: str, timeout: float = 20.0
    ) -> Member:
        with open(events.with_suffix(".stderr"), "ab") as stderr:  # noqa: ASYNC230 - tiny, local
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.proc",
                url,
                pool,
                str(events),
                *args,
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode().split()
        assert line and line[0] == "ready", f"member did not start: {line}"
        return cls(proc, line[1])

    async def send(self, command: str) -> None:
        """Send a command without waiting for its answer (read it with ``answer``)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()

    async def answer(self, timeout: float = 30.0) -> str:
        """The next answer line: ``ok ...`` or ``error <class> <message>``."""
        assert self.proc.stdout is not None
        return (await asyncio.wait_for(self.proc.stdout.readline(), timeout)).decode().strip()

    async def ask(self, command: str, timeout: float = 30.0) -> str:
        await self.send(command)
        line = await self.answer(timeout)
        if not line.startswith("ok"):
            raise AssertionError(f"{command!r} -> {line!r}")
        return line[3:]

    def kill(self) -> None:
        """kill -9, remembering when (monotonic ns) for the invariant checker."""
        self.killed_at = time.monotonic_ns()
        os.kill(self.pid, signal.SIGKILL)

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    async def wait(self, timeout: float = 30.0) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def terminate(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await self.wait(15)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()


@dataclass
class History:
    """What every process did, read back from the events file."""

    intervals: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)
    """key -> [(pid, start ns, end ns or -1 while running)]"""
    ticks: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    """key -> [(ns, pid)]"""


def read_history(events: Path, killed: dict[int, int]) -> History:
    """Intervals of each key on each process; a killed process's jobs end at its kill."""
    open_: dict[tuple[str, int], int] = {}
    intervals: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    ticks: dict[str, list[tuple[int, int]]] = defaultdict(list)
    text = events.read_text() if events.exists() else ""
    lines = text[: text.rfind("\n") + 1].splitlines()  # a line being appended is left out
    for line in sorted(lines, key=lambda ln: int(ln.split()[0])):
        ns_s, pid_s, event, key = line.split(" ", 3)
        ns, pid = int(ns_s), int(pid_s)
        if event == "start":
            open_[(key, pid)] = ns
        elif event == "stop" and (key, pid) in open_:
            intervals[key].append((pid, open_.pop((key, pid)), ns))
        elif event == "tick":
            ticks[key].append((ns, pid))
    for (key, pid), ns in open_.items():
        intervals[key].append((pid, ns, killed.get(pid, -1)))
    return History(dict(intervals), dict(ticks))


def running_now(history: History) -> dict[str, list[int]]:
    """key -> pids on which it runs at the end of the history."""
    return {
        key: [pid for pid, _, end in spans if end == -1] for key, spans in history.intervals.items()
    }

"""Event-loop stall detection. Fencing runs on the event loop, so handler code that blocks it
(a time.sleep() in an async start(), a GIL-holding C call) keeps a node from stopping its jobs
while its lease runs out: after such a stall the node must fence before anything else.

Two halves: a callback the loop runs every ``limit / 4`` measures how late it ran, and on a
stall longer than ``limit`` calls ``on_stall`` (the lease's fence) as soon as the loop runs
again; a daemon thread watches the same clock and logs the stall while it lasts, with the
line of code the loop is stuck in, since a loop that never comes back never logs anything."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from collections.abc import Callable

from structlog.typing import FilteringBoundLogger


class LoopWatchdog:
    def __init__(
        self, limit: float, on_stall: Callable[[float], None], log: FilteringBoundLogger
    ) -> None:
        self._limit = limit
        self._period = limit / 4
        self._on_stall = on_stall
        self._log = log
        self._last = time.monotonic()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = threading.Event()
        self._loop_thread = threading.get_ident()

    def start(self) -> None:
        """Start watching the running loop (call from it)."""
        self._loop_thread = threading.get_ident()
        self._last = time.monotonic()
        self._timer = asyncio.get_running_loop().call_later(self._period, self._beat)
        threading.Thread(target=self._watch, name="redpool-watchdog", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        if self._timer is not None:
            self._timer.cancel()

    def _beat(self) -> None:
        now = time.monotonic()
        lag = now - self._last - self._period
        self._last = now
        self._timer = asyncio.get_running_loop().call_later(self._period, self._beat)
        if lag > self._limit:
            self._on_stall(lag)

    def _watch(self) -> None:
        reported = False
        while not self._closed.wait(self._period):
            silent = time.monotonic() - self._last - self._period
            if silent <= self._limit:
                reported = False
            elif not reported:
                reported = True
                self._log.error(
                    "event loop blocked: handler code must not block it (run blocking work "
                    "in a sync handler, which runs in a thread); this node fences when it "
                    "resumes",
                    blocked_for=round(silent, 3),
                    blocked_in=self._where(),
                )

    def _where(self) -> str:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return "?"
        last = traceback.extract_stack(frame)[-1]
        return f"{last.filename}:{last.lineno} in {last.name}"

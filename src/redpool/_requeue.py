"""Requeued jobs are routed the moment their backoff ends.

``started`` answers a requeue with the delay before the next attempt. The node that reported it
routes the job when that delay has passed, timed from the reply (the server computed the due
time before it answered, so this is never early on the Redis clock; ``assign`` checks it too).
If this node is gone by then, the heartbeat's overdue scan of any node routes the job instead,
at its next beat.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from structlog.typing import FilteringBoundLogger

from ._redis import TRANSIENT

SLACK = 0.002  # s: the due time is stored in whole ms


class DueRoutes:
    def __init__(
        self,
        route: Callable[[Sequence[tuple[str, int]]], Awaitable[None]],
        log: FilteringBoundLogger,
    ) -> None:
        self._route = route
        self._log = log
        self._timers: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def at(self, key: str, epoch: int, delay_ms: int) -> None:
        """Route job ``key`` (requeued at ``epoch``) once ``delay_ms`` have passed."""
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(timer)
            task = asyncio.ensure_future(self._run(key, epoch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        timer = loop.call_later(delay_ms / 1000 + SLACK, fire)
        self._timers.add(timer)

    async def _run(self, key: str, epoch: int) -> None:
        try:
            await self._route([(key, epoch)])
        except TRANSIENT as exc:
            self._log.info(
                "could not route a requeued job; the heartbeat will", key=key, error=repr(exc)
            )

    def close(self) -> None:
        """This node leaves: the heartbeats of the others route what is still due."""
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

"""Coalesce calls made in the same event-loop turn into one Redis round trip."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """``await batcher.submit(item)`` returns ``flush([... item ...])[i]``; the items submitted
    in one event-loop turn are flushed together, in calls of at most ``max_batch`` items.

    The first submit of a batch creates the task that flushes it. A task's first step runs in
    the loop's next turn, after every callback of this one, so the batch holds all of this
    turn's items without waiting a turn more."""

    def __init__(
        self, flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]], max_batch: int = 500
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._open: list[tuple[T, asyncio.Future[R]]] | None = None  # the batch still filling
        self._tasks: set[asyncio.Task[None]] = set()  # held until done (else collectable)

    def submit(self, item: T) -> asyncio.Future[R]:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        batch = self._open
        if batch is None or len(batch) >= self._max_batch:
            batch = self._open = []
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        batch.append((item, fut))
        return fut

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        if self._open is batch:
            self._open = None
        try:
            results = await self._flush([item for item, _ in batch])
        except BaseException as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, fut), result in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(result)

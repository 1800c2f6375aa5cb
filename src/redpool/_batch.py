"""Coalesce calls made in the same event-loop turn into one Redis round trip."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """``await batcher.submit(item)`` returns ``flush([... item ...])[i]``; the items submitted
    before the flush task runs are flushed together, in calls of at most ``max_batch`` items."""

    def __init__(
        self, flush: Callable[[Sequence[T]], Awaitable[Sequence[R]]], max_batch: int = 500
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._items: list[tuple[T, asyncio.Future[R]]] = []
        self._task: asyncio.Task[None] | None = None

    def submit(self, item: T) -> asyncio.Future[R]:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._items.append((item, fut))
        if self._task is None:
            self._task = asyncio.create_task(self._run())
        return fut

    async def _run(self) -> None:
        await asyncio.sleep(0)  # let the other callers of this turn join the batch
        items, self._items, self._task = self._items, [], None
        await asyncio.gather(
            *(
                self._flush_chunk(items[i : i + self._max_batch])
                for i in range(0, len(items), self._max_batch)
            )
        )

    async def _flush_chunk(self, items: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._flush([item for item, _ in items])
        except BaseException as exc:
            for _, fut in items:
                if not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, fut), result in zip(items, results, strict=True):
            if not fut.done():
                fut.set_result(result)

"""The batcher: the calls of one event-loop turn go to Redis in one flush, in order, and a
failed flush fails each of its callers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from redpool._batch import Batcher


class Flushes:
    """A flush function that records the batches it was given."""

    def __init__(self, error: Exception | None = None) -> None:
        self.batches: list[list[int]] = []
        self.error = error

    async def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        if self.error is not None:
            raise self.error
        return [item * 10 for item in items]


async def test_the_calls_of_one_loop_turn_are_flushed_together_and_answered_in_order():
    flushes = Flushes()
    batcher = Batcher(flushes)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(3))) == [0, 10, 20]
    assert await batcher.submit(3) == 30
    assert flushes.batches == [[0, 1, 2], [3]]


async def test_callers_woken_in_the_same_turn_share_one_flush():
    # As when one inbox read wakes many dispatchers: each submits in its own task.
    flushes = Flushes()
    batcher = Batcher(flushes)
    woken = asyncio.Event()

    async def caller(i: int) -> int:
        await woken.wait()
        return await batcher.submit(i)

    callers = [asyncio.create_task(caller(i)) for i in range(5)]
    await asyncio.sleep(0)  # every caller waits on the event now
    woken.set()
    assert await asyncio.gather(*callers) == [0, 10, 20, 30, 40]
    assert flushes.batches == [[0, 1, 2, 3, 4]]


async def test_a_batch_over_max_batch_is_flushed_in_chunks():
    flushes = Flushes()
    batcher = Batcher(flushes, max_batch=2)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(5))) == [0, 10, 20, 30, 40]
    assert flushes.batches == [[0, 1], [2, 3], [4]]


async def test_a_failed_flush_fails_each_of_its_callers():
    batcher = Batcher(Flushes(ConnectionError("gone")))
    results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    with pytest.raises(ConnectionError):
        await batcher.submit(4)

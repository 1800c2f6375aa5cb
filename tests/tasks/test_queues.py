"""A queue's order and bounds: priorities (higher first, FIFO within one) and max_queued."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

import redpool
from tests.helpers import eventually
from tests.tasks.conftest import TaskWorkerProc, read_events
from tests.tasks.sample_tasks import echo, sleep

Workers = Callable[..., Awaitable[TaskWorkerProc]]
MakeNode = Callable[..., Awaitable[redpool.Node]]


def _starts(path: Path) -> list[str]:
    return [e[3] for e in read_events(path) if e[2] == "start"]


async def test_higher_priority_jobs_start_first_and_fifo_within_one_priority(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    await task_workers(1)  # one slot, held by the blocker while the others queue up
    node = await make_node(client_only=True)
    blocker = await node.submit(sleep, {"s": 0.5}, key="blocker")
    await eventually(lambda: _starts(task_events) == ["blocker"], what="the blocker started")
    order = [("low-1", 0), ("mid-1", 5), ("top", 9), ("low-2", 0), ("mid-2", 5), ("low-3", 0)]
    handles = [await node.submit(echo, k, key=k, priority=p) for k, p in order]
    assert {await h.status() for h in handles} == {redpool.Status.QUEUED}
    for handle in handles:
        await handle.wait(timeout=20)
    await blocker.wait(timeout=10)
    assert _starts(task_events) == ["blocker", "top", "mid-1", "mid-2", "low-1", "low-2", "low-3"]


async def test_max_queued_bounds_a_queue_and_a_keys_fifo_pool_wide(
    make_node: MakeNode, task_workers: Workers
) -> None:
    one, other = await make_node(client_only=True), await make_node(client_only=True)
    await one.configure_queue("default", max_queued=2)
    first = await one.submit(sleep, {"s": 0.01}, key="k")  # no worker: both wait
    await other.submit(sleep, {"s": 0.01})
    with pytest.raises(redpool.QueueFullError, match="queue 'default' has 2 jobs waiting"):
        await other.submit(sleep, {"s": 0.01})
    later = await other.submit(sleep, {"s": 0.01}, delay=60)  # not waiting for a slot yet
    assert await later.status() is redpool.Status.SCHEDULED
    # The key's own FIFO (if_active="queue") is bounded by its queue's max_queued too.
    behind = [await one.submit(sleep, {"s": 0.01}, key="k", if_active="queue") for _ in range(2)]
    with pytest.raises(redpool.QueueFullError, match="FIFO of key 'k'"):
        await other.submit(sleep, {"s": 0.01}, key="k", if_active="queue")
    await task_workers(2)
    for handle in [first, *behind]:
        assert (await handle.wait(timeout=10)).status is redpool.Status.SUCCEEDED
    assert (await one.jobs.stats()).queues["default"].max_queued == 2


async def test_a_batch_that_would_overfill_a_queue_is_refused_whole(
    make_node: MakeNode, redis: Redis, pool_name: str
) -> None:
    node = await make_node(client_only=True)
    await node.configure_queue("default", max_queued=3)
    await node.submit(sleep, {"s": 0.01})
    batch = [redpool.Submission(sleep, {"s": 0.01}, key=f"b{i}") for i in range(3)]
    with pytest.raises(redpool.QueueFullError, match="none of the 3 jobs of this call"):
        await node.submit_many(batch)
    assert (await node.jobs.stats()).queues["default"].ready == 1  # nothing of it admitted
    assert not await redis.hexists(f"redpool:{{{pool_name}}}:t:jobs", "b0")
    handles = await node.submit_many(batch[:2])  # what fits is admitted
    assert [await h.status() for h in handles] == [redpool.Status.QUEUED] * 2

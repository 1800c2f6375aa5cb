"""shutdown() is pool-wide: every job is stopped everywhere, then the pool's keys are gone."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

import redpool
from tests.helpers import Recorder, SlowStop, eventually
from tests.procs import read_history, running_now


async def test_shutdown_stops_every_job_on_every_node_and_deletes_the_pool(
    make_node, members, events_file, redis: aioredis.Redis, pool_name: str
):
    procs = [await members("--workers", "2") for _ in range(2)]
    node = await make_node()
    keys = [f"job-{i}" for i in range(20)]
    await asyncio.gather(*(node.dispatch_job(k) for k in keys))
    await node.shutdown()
    assert node.is_shutdown()
    history = read_history(events_file, {})
    assert sorted(history.intervals) == sorted(keys)
    assert all(pids == [] for pids in running_now(history).values()), "a job still runs"
    # Only the tombstone is left, so a node cut off through the shutdown never rejoins.
    tombstone = f"redpool:{{{pool_name}}}:ended".encode()
    assert await redis.keys(f"redpool:{{{pool_name}}}:*") == [tombstone]
    for proc in procs:
        with pytest.raises(AssertionError, match=r"PoolShuttingDownError|PoolClosedError"):
            await proc.ask("dispatch more")
    with pytest.raises(redpool.PoolClosedError):
        await node.dispatch_job("more")


async def test_shutdown_waits_for_other_nodes_to_finish_stopping(make_node, pool_name):
    node = await make_node()
    other = await make_node()
    handler = SlowStop()
    await other.add_worker(handler)
    await node.dispatch_job("slow")
    await node.shutdown()
    assert handler.stopped == ["slow"]
    await eventually(other.is_shutdown, what="other node shut down")
    with pytest.raises(redpool.PoolShuttingDownError):
        await other.dispatch_job("x")


async def test_close_waits_for_a_shutdown_leave_already_under_way(make_node):
    initiator = await make_node()
    other = await make_node()
    handler = SlowStop()
    await other.add_worker(handler)
    await initiator.dispatch_job("slow")
    shutting = asyncio.create_task(initiator.shutdown())
    await eventually(other.is_shutdown, what="the other node heard of the shutdown")
    await other.close()  # the README's pattern: wait for is_shutdown(), close(), exit
    assert handler.stopped == ["slow"], "close() returned before the node had stopped its jobs"
    await shutting


async def test_purge_pool_deletes_a_pool_larger_than_one_purge_step(
    make_node, redis: aioredis.Redis, pool_name: str
):
    node = await make_node(max_queued_jobs=5000)
    handler = Recorder()
    await node.add_worker(handler)
    await node.add_worker(Recorder())
    keys = [f"job-{i}" for i in range(1200)]  # more than two purge steps (500 each)
    await asyncio.gather(*(node.dispatch_job(k) for k in keys))
    handler.gate = asyncio.Event()  # so notes wait in Redis
    await asyncio.gather(*(node.notify_worker(k, b"n") for k in keys[:50]))
    await node.new_ticker("t", 60)
    await redpool.purge_pool(redis, pool_name)
    assert await redis.keys(f"redpool:{{{pool_name}}}:*") == [_tombstone(pool_name)]
    # The node learns at its next beat that its pool ended, and closes without writing.
    await eventually(node.is_shutdown, what="the node closed itself")
    await node.close()
    assert await redis.keys(f"redpool:{{{pool_name}}}:*") == [_tombstone(pool_name)]


def _tombstone(pool_name: str) -> bytes:
    return f"redpool:{{{pool_name}}}:ended".encode()

"""Leaving the pool: close() leaves with all of a node's workers in one step, so their jobs go
straight to the workers that stay; a rejoin racing remove_worker() registers no ghost."""

from __future__ import annotations

import asyncio

import msgpack
import redis.asyncio as aioredis

import redpool
from redpool._keys import Keys
from tests.helpers import eventually
from tests.invariants import episodes, keys_on, runs_exactly_once


async def _epochs(redis: aioredis.Redis, pool: str, keys: set[str]) -> dict[str, int]:
    raw = await redis.hmget(Keys(pool).jobs, sorted(keys))
    return {k: msgpack.unpackb(r)["e"] for k, r in zip(sorted(keys), raw, strict=True)}


async def test_close_hands_each_job_once_to_a_worker_that_stays(
    make_node, members, events_file, redis, pool_name
):
    closing = await members("--workers", "2", "--slow-stop", "1")
    staying = await members("--workers", "1")
    client = await make_node(client_only=True)
    keys = [f"job-{i}" for i in range(30)]
    await asyncio.gather(*(client.dispatch_job(k) for k in keys))
    await eventually(lambda: runs_exactly_once(events_file, keys, {}), what="all running")
    mine = keys_on(episodes(events_file, {}), closing.pid)
    assert mine
    before = await _epochs(redis, pool_name, mine)
    drawn = int(await redis.hget(Keys(pool_name).meta, "epoch"))
    await closing.ask("close")
    await eventually(
        lambda: keys_on(episodes(events_file, {}), staying.pid) == set(keys), what="moved"
    )
    after = await _epochs(redis, pool_name, mine)
    assert all(after[k] > e for k, e in before.items()), "a job was not assigned again"
    # Every assignment draws a fresh epoch from the pool-wide counter: one each, no more.
    moves = int(await redis.hget(Keys(pool_name).meta, "epoch")) - drawn
    assert moves == len(mine), "a job was assigned more than once"


class GatedStop:
    """stop() waits until the test opens the gate."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.gate = asyncio.Event()

    async def start(self, job: redpool.Job) -> None:
        pass

    async def stop(self, key: str) -> None:
        self.stopping.set()
        await self.gate.wait()


async def test_a_rejoin_racing_remove_worker_registers_no_ghost_worker(make_node, redis, pool_name):
    node = await make_node()
    handler = GatedStop()
    worker = await node.add_worker(handler)
    await node.dispatch_job("k")
    keys = Keys(pool_name)
    # Reaped as another node would: the next beat finds it missing, and the node rejoins.
    await redis.zrem(keys.leases, worker.id)
    await redis.hdel(keys.workers, worker.id)
    await eventually(handler.stopping.is_set, what="the reaped worker's job is being stopped")
    removal = asyncio.create_task(node.remove_worker(worker))
    await eventually(worker.is_stopped, what="remove_worker() began while the rejoin is under way")
    handler.gate.set()
    await removal
    renewed = await redis.zscore(keys.leases, node.id)

    async def beat_since() -> bool:
        return (await redis.zscore(keys.leases, node.id) or 0) > (renewed or 0)

    await eventually(beat_since, what="a heartbeat after remove_worker() returned")
    assert node.workers() == []
    assert [w.id for w in await node.pool_workers() if w.node_id == node.id] == []

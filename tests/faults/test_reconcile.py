"""Nothing depends on a message arriving: lost stream entries and records that disagree with
what runs are repaired from the records, within 2 x worker_ttl."""

from __future__ import annotations

import asyncio
import time

import msgpack
import redis.asyncio as aioredis

import redpool
from redpool._keys import Keys
from tests.helpers import eventually
from tests.invariants import episodes, keys_on, running_at_end, summary

TTL = 1.0
GRACE = 0.5


async def test_a_start_message_that_never_arrived_is_redelivered_after_the_grace_period(
    make_node, members, events_file, redis: aioredis.Redis, pool_name, report
):
    """The record says 'assigned to W' but W's inbox never got the start (as if the entry
    was lost): the heartbeat redelivers it once the ack grace period is over."""
    member = await members("--workers", "1", "--ttl", str(TTL), "--grace", str(GRACE))
    client = await make_node(client_only=True)
    (worker,) = await client.pool_workers()
    keys = Keys(pool_name)
    seconds, micros = await redis.time()
    now_ms = seconds * 1000 + micros // 1000
    record = {"p": b"", "c": now_ms, "d": "gone", "w": worker.id, "s": "assigned", "e": 1, "a": 0}
    written = time.monotonic()
    await redis.hset(keys.jobs, "lost", _as_lua_packs(record))
    await redis.sadd(keys.owned(worker.id), "lost")
    await redis.zadd(keys.pending, {"lost": now_ms + int(GRACE * 1000)})
    await eventually(
        lambda: "lost" in running_at_end(episodes(events_file, {})), GRACE + TTL + 1, "redelivered"
    )
    report(summary(f"lost start message, ack_grace_period={GRACE}s", [time.monotonic() - written]))
    assert keys_on(episodes(events_file, {}), member.pid) == {"lost"}


def _as_lua_packs(record: dict[str, object]) -> bytes:
    """Lua's cmsgpack writes strings as msgpack str, never bin."""
    return msgpack.packb(record, use_bin_type=False)


async def test_a_record_naming_a_worker_that_does_not_run_it_is_rerouted(
    make_node, members, events_file, redis: aioredis.Redis, pool_name, report
):
    member = await members("--workers", "1", "--ttl", str(TTL))
    client = await make_node(client_only=True)
    (worker,) = await client.pool_workers()
    keys = Keys(pool_name)
    record = {"p": b"", "c": 0, "d": "gone", "w": worker.id, "s": "running", "e": 1, "a": 0}
    written = time.monotonic()
    await redis.hset(keys.jobs, "orphan", _as_lua_packs(record))
    await redis.sadd(keys.owned(worker.id), "orphan")
    await eventually(
        lambda: "orphan" in running_at_end(episodes(events_file, {})), 2 * TTL + 1, "repaired"
    )
    report(summary("orphaned record repaired", [time.monotonic() - written]))
    assert running_at_end(episodes(events_file, {}))["orphan"] == [member.pid]


async def test_a_job_running_without_its_record_is_stopped(
    make_node, members, events_file, redis: aioredis.Redis, pool_name
):
    member = await members("--workers", "1", "--ttl", str(TTL))
    client = await make_node(client_only=True)
    await client.dispatch_job("stray")
    await redis.hdel(Keys(pool_name).jobs, "stray")
    await eventually(
        lambda: "stray" not in running_at_end(episodes(events_file, {})), 2 * TTL + 1, "stopped"
    )
    assert [e.pid for e in episodes(events_file, {}) if e.key == "stray"] == [member.pid]


class GatedStops:
    """stop() waits for ``release``; ``stopping`` lists the stops under way."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.stopping: list[str] = []

    async def start(self, job: redpool.Job) -> None:
        pass

    async def stop(self, key: str) -> None:
        self.stopping.append(key)
        await self.release.wait()


async def test_one_slow_stop_does_not_hold_up_the_other_repairs(
    make_node, redis: aioredis.Redis, pool_name
):
    node = await make_node()
    handler = GatedStops()
    await node.add_worker(handler)
    keys = [f"stray-{i}" for i in range(5)]
    for key in keys:
        await node.dispatch_job(key)
    await redis.hdel(Keys(pool_name).jobs, *keys)
    try:
        await eventually(
            lambda: sorted(handler.stopping) == keys, 3 * TTL, "every stray's stop() under way"
        )
    finally:
        handler.release.set()

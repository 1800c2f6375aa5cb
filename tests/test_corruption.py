"""Entries written into redpool's keys by hand are logged and skipped; nothing stops serving."""

from __future__ import annotations

import msgpack
import redis.asyncio as aioredis
import structlog

import redpool
from redpool._keys import Keys
from tests.helpers import Recorder, eventually


async def test_corrupt_stream_entries_and_records_are_logged_and_skipped(
    make_node, redis: aioredis.Redis, pool_name: str
):
    keys = Keys(pool_name)
    with structlog.testing.capture_logs() as logs:
        node = await make_node()
        handler = Recorder()
        await node.add_worker(handler)
        inbox = keys.inbox(node.id)
        for fields in (
            {"m": b"\xc1garbage"},
            {"x": b"no m"},
            {"m": msgpack.packb({"not": "a list"})},
            {"m": msgpack.packb(["start"])},
            {"m": msgpack.packb(["stop", "k", "w", "not-an-int"])},
            {"m": msgpack.packb(["reply"])},
            {"m": msgpack.packb(["who-knows"])},
        ):
            await redis.xadd(inbox, fields)
        await redis.xadd(keys.events, {"m": b"\x00\x01"})
        await redis.hset(keys.workers, "bogus.1", b"not msgpack")
        await redis.hset(keys.jobs, "corrupt", b"\xc1")
        await redis.zadd(keys.pending, {"corrupt": 0, "ghost": 0})
        await redis.sadd(keys.owned(node.workers()[0].id), "ghost")

        await eventually(lambda: _removed_from_pending(redis, keys), what="index cleaned")
        await node.dispatch_job("fine", b"still works")
        assert handler.running["fine"].payload == b"still works"
        assert await node.job_payload("corrupt") is None
        assert await node.job_info("corrupt") is None
        assert [j.key for j in await node.pool_jobs()] == ["fine"]
        assert [j.key for j in await node.pool_jobs(worker=node.workers()[0].id)] == ["fine"]
        assert [w.id for w in await node.pool_workers()] == [node.workers()[0].id]
        await node.stop_job("corrupt")
        assert await node.job_keys() == ["fine"]
        await node.stop_job("fine")

    events = [e["event"] for e in logs]
    assert "skipping corrupt stream entry" in events
    assert "skipping malformed message" in events
    assert "corrupt job record" in events
    assert "corrupt worker record" in events
    assert "corrupt job record left alone; stop_job() removes it" in events


async def _removed_from_pending(redis: aioredis.Redis, keys: Keys) -> bool:
    return await redis.zcard(keys.pending) == 0


async def test_a_corrupt_job_record_blocks_its_key_until_stopped(make_node, redis, pool_name):
    node = await make_node()
    await node.add_worker(Recorder())
    await redis.hset(Keys(pool_name).jobs, "k", b"junk")
    try:
        await node.dispatch_job("k")
    except redpool.JobExistsError:
        pass
    else:
        raise AssertionError("a corrupt record must still count as an existing job")
    await node.stop_job("k")
    await node.dispatch_job("k")

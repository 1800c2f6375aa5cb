"""Every key of a pool shares one Redis Cluster hash tag; two pools share nothing."""

from __future__ import annotations

import redis.asyncio as aioredis

from tests.helpers import Recorder


async def test_every_key_of_a_pool_carries_the_pool_hash_tag(make_node, redis, pool_name):
    node = await make_node()
    await node.add_worker(Recorder())
    await node.dispatch_job("a")
    await node.dispatch_job("b")
    await node.stop_job("a")
    keys = [k.decode() for k in await redis.keys("*") if pool_name.encode() in k]
    assert len(keys) >= 6
    for key in keys:
        # The hash tag is the text between the first '{' and the next '}'.
        start = key.index("{")
        assert key[start + 1 : key.index("}", start)] == pool_name, key


async def test_two_pools_in_one_redis_are_isolated(make_node, redis: aioredis.Redis):
    one = await make_node(pool="iso-one")
    two = await make_node(pool="iso-two")
    h1, h2 = Recorder(), Recorder()
    await one.add_worker(h1)
    await two.add_worker(h2)
    await one.dispatch_job("same-key", b"1")
    await two.dispatch_job("same-key", b"2")
    assert h1.running["same-key"].payload == b"1"
    assert h2.running["same-key"].payload == b"2"
    assert [w.id for w in await one.pool_workers()] == [one.workers()[0].id]
    await one.shutdown()
    assert await two.job_keys() == ["same-key"]
    assert await redis.keys("redpool:{iso-one}:*") == [b"redpool:{iso-one}:ended"]
    await two.stop_job("same-key")


async def test_shutting_down_a_pool_whose_name_is_a_glob_spares_the_pools_it_matches(make_node):
    globby = await make_node(pool="iso-[ab]?")
    victim = await make_node(pool="iso-ax")
    handler = Recorder()
    await victim.add_worker(handler)
    await victim.dispatch_job("survives")
    await globby.shutdown()
    assert await victim.job_keys() == ["survives"]
    assert "survives" in handler.running

"""Bad input gets a clear error from redpool's hierarchy, never a hang."""

from __future__ import annotations

import asyncio
import time

import pytest

import redpool
from tests.helpers import Recorder
from tests.redis_server import free_port


@pytest.mark.parametrize("key", ["", 42, None, b"bytes", "\ud800", "k" * 1025])
async def test_bad_keys_are_rejected(make_node, key):
    node = await make_node()
    with pytest.raises(redpool.InvalidArgumentError):
        await node.dispatch_job(key)
    with pytest.raises(ValueError):
        await node.stop_job(key)


@pytest.mark.parametrize("payload", ["text", 3, [1]])
async def test_non_bytes_payloads_are_rejected(make_node, payload):
    node = await make_node()
    with pytest.raises(redpool.InvalidArgumentError, match="bytes"):
        await node.dispatch_job("k", payload)


async def test_payloads_over_the_limit_are_rejected(make_node):
    node = await make_node(max_payload_size=16)
    with pytest.raises(redpool.InvalidArgumentError, match="max_payload_size"):
        await node.dispatch_job("k", b"x" * 17)
    handler = Recorder()
    await node.add_worker(handler)
    await node.dispatch_job("k", b"x" * 16)
    assert handler.running["k"].payload == b"x" * 16


@pytest.mark.parametrize(
    "options",
    [
        {"worker_ttl": 0},
        {"worker_ttl": "10"},
        {"ack_grace_period": -1},
        {"max_queued_jobs": 0},
        {"max_queued_jobs": 1.5},
        {"client_only": "yes"},
        {"max_payload_size": 0},
    ],
)
async def test_bad_options_are_rejected(redis_url, options):
    with pytest.raises(redpool.InvalidArgumentError):
        await redpool.add_node("pool", redis_url, **options)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"worker_ttl": 0.01}, "worker_ttl must be at least 1 s"),
        ({"ack_grace_period": 0.01}, "ack_grace_period must be at least 0.1 s"),
        ({"max_payload_size": 64 * 1024 * 1024 + 1}, "at most 67108864 \\(64 MiB\\)"),
    ],
)
async def test_options_outside_the_sane_range_are_rejected_with_the_limit(redis_url, options, says):
    with pytest.raises(redpool.InvalidArgumentError, match=says):
        await redpool.add_node("pool", redis_url, **options)


async def test_a_key_that_is_not_valid_unicode_fails_alone_not_its_batch(make_node):
    node = await make_node()
    handler = Recorder()
    await node.add_worker(handler)
    keys = [f"k{i}" for i in range(20)]
    results = await asyncio.gather(
        *(node.dispatch_job(k) for k in [*keys[:10], "\ud800", *keys[10:]]),
        return_exceptions=True,
    )
    assert isinstance(results[10], redpool.InvalidArgumentError)
    assert "not valid Unicode" in str(results[10])
    assert [r for i, r in enumerate(results) if i != 10] == [None] * 20
    assert sorted(handler.running) == sorted(keys)


async def test_a_key_of_1_kib_is_accepted(make_node):
    node = await make_node()
    handler = Recorder()
    await node.add_worker(handler)
    await node.dispatch_job("é" * 512)  # 1024 bytes in UTF-8
    assert list(handler.running) == ["é" * 512]


@pytest.mark.parametrize("name", ["", "a{b}", "has space", "star*", 7])
async def test_bad_pool_names_are_rejected(redis_url, name):
    with pytest.raises(redpool.InvalidArgumentError):
        await redpool.add_node(name, redis_url)


async def test_a_handler_without_start_and_stop_is_rejected(make_node):
    node = await make_node()
    with pytest.raises(redpool.InvalidArgumentError, match="start"):
        await node.add_worker(object())  # type: ignore[arg-type]


async def test_a_handler_class_instead_of_an_instance_is_rejected(make_node):
    node = await make_node()
    with pytest.raises(redpool.InvalidArgumentError, match=r"instance.*pass Recorder\(\)"):
        await node.add_worker(Recorder)  # type: ignore[arg-type]


async def test_not_a_redis_client_is_rejected():
    with pytest.raises(redpool.InvalidArgumentError, match="redis"):
        await redpool.add_node("pool", 42)  # type: ignore[arg-type]


async def test_redis_down_at_join_raises_redis_unavailable():
    started = time.monotonic()
    with pytest.raises(redpool.RedisUnavailableError):
        await redpool.add_node("pool", f"redis://127.0.0.1:{free_port()}/0", connect_timeout=1)
    assert time.monotonic() - started < 10


async def test_redis_down_during_dispatch_raises_redis_unavailable(fresh_redis):
    server = fresh_redis()
    node = await redpool.add_node("pool", server.url, ack_grace_period=0.3, worker_ttl=1.0)
    server.stop()
    with pytest.raises(redpool.RedisUnavailableError):
        await node.dispatch_job("k")
    await node.close()


async def test_a_client_with_decode_responses_is_accepted(redis_url, pool_name):
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    node = await redpool.add_node(pool_name, client, worker_ttl=1.0)
    handler = Recorder()
    await node.add_worker(handler)
    await node.dispatch_job("k", b"\xff")
    assert handler.running["k"].payload == b"\xff"
    await node.close()
    assert await client.ping()
    await client.aclose()

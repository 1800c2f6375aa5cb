"""No user code in the lease loop: a stop() that never returns keeps its own job from moving,
and nothing else. The node renews its lease, rejoins when it was declared dead, and is not
declared dead for it."""

from __future__ import annotations

import asyncio
import signal

import redis.asyncio as aioredis

import redpool
from redpool._keys import Keys
from tests.faults.test_amnesty import TTL, declared_dead, renewed_since, server_ms
from tests.helpers import eventually
from tests.invariants import runs_exactly_once


async def _pool(members, url, pool_name, events_file):
    hung = await members("--workers", "1", "--ttl", str(TTL), "--slow-stop", "inf", url=url)
    other = await members("--workers", "1", "--ttl", str(TTL), url=url)
    client = await redpool.add_node(
        pool_name, url, client_only=True, worker_ttl=TTL, ack_grace_period=1.0
    )
    keys = [f"job-{i}" for i in range(20)]
    await asyncio.gather(*(client.dispatch_job(k) for k in keys))
    await eventually(lambda: runs_exactly_once(events_file, keys, {}), 10, "settled")
    return hung, other, client


async def test_fencing_stops_that_never_return_keep_no_node_from_renewing(
    members, pool_name, events_file, fresh_redis
):
    server = fresh_redis(appendonly=True)
    hung, _, client = await _pool(members, server.url, pool_name, events_file)
    workers = {w.id for w in await client.pool_workers()}
    server.stop()
    await asyncio.sleep(TTL * 1.25)  # long enough for every node to fence
    server.start()
    admin = aioredis.Redis.from_url(server.url)
    back = await server_ms(admin)
    # Renewed a whole TTL after Redis came back: the beat did not wait for the stop() calls.
    await eventually(
        lambda: renewed_since(admin, pool_name, back + int(TTL * 1000), hung.node_id), 15, "beat"
    )
    assert {w.id for w in await client.pool_workers()} == workers
    assert declared_dead(events_file) == []
    hung.kill()  # its close() would wait for the stop() calls
    await client.close()
    await admin.aclose()


async def test_a_node_declared_dead_rejoins_although_its_stop_calls_never_return(
    members, pool_name, events_file, fresh_redis
):
    server = fresh_redis()
    hung, _, client = await _pool(members, server.url, pool_name, events_file)
    admin = aioredis.Redis.from_url(server.url)
    hung.signal(signal.SIGSTOP)
    try:
        await eventually(
            lambda: _registered(client, hung.node_id, False), 15, "the paused worker reaped"
        )
    finally:
        hung.signal(signal.SIGCONT)
    back = await server_ms(admin)
    await eventually(lambda: _registered(client, hung.node_id, True), 15, "rejoined")
    await eventually(
        lambda: renewed_since(admin, pool_name, back + int(TTL * 1000), f"{hung.node_id}."),
        15,
        "the rejoined worker keeps its lease",
    )
    assert await admin.zscore(Keys(pool_name).leases, hung.node_id) is not None
    hung.kill()
    await client.close()
    await admin.aclose()


async def _registered(client: redpool.Node, node_id: str, expected: bool) -> bool:
    mine = [w for w in await client.pool_workers() if w.node_id == node_id]
    return bool(mine) == expected

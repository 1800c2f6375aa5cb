"""Nobody is declared dead for an outage or a stall that kept everyone from renewing: leases
that ran out during a gap in the pool's heartbeats prove nothing, whatever beat comes first
after it (a beat queued before a stall, a close() right after an outage)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import redis.asyncio as aioredis

import redpool
from redpool._keys import Keys
from tests.helpers import eventually
from tests.invariants import check_no_overlap, episodes, runs_exactly_once

TTL = 2.0


async def server_ms(client: aioredis.Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds * 1000 + micros // 1000)


async def renewed_since(client: aioredis.Redis, pool: str, since_ms: int, prefix: str = "") -> bool:
    """Every lease (of ids starting with ``prefix``) was renewed after ``since_ms``."""
    leases = await client.zrange(Keys(pool).leases, 0, -1, withscores=True)
    mine = [score for member, score in leases if member.decode().startswith(prefix)]
    return bool(mine) and min(mine) - TTL * 1000 > since_ms


def declared_dead(events_file: Path) -> list[str]:
    text = events_file.with_suffix(".stderr").read_text()
    return [line for line in text.splitlines() if "declared dead" in line or "reaped" in line]


def moved(events_file: Path) -> list[str]:
    pids: dict[str, set[int]] = {}
    for e in episodes(events_file, {}):
        pids.setdefault(e.key, set()).add(e.pid)
    return [k for k, p in pids.items() if len(p) > 1]


async def _pool(members, url, pool_name, events_file):
    procs = [await members("--workers", "2", "--ttl", str(TTL), url=url) for _ in range(3)]
    client = await redpool.add_node(
        pool_name, url, client_only=True, worker_ttl=TTL, ack_grace_period=1.0
    )
    keys = [f"job-{i}" for i in range(30)]
    await asyncio.gather(*(client.dispatch_job(k) for k in keys))
    await eventually(lambda: runs_exactly_once(events_file, keys, {}), 10, "settled")
    workers = {w.id for w in await client.pool_workers()}
    return procs, client, keys, workers


async def test_a_redis_stall_longer_than_the_ttl_declares_no_live_worker_dead(
    members, pool_name, events_file, fresh_redis
):
    server = fresh_redis()
    _, client, keys, workers = await _pool(members, server.url, pool_name, events_file)
    admin = aioredis.Redis.from_url(server.url)
    # Every beat sent during the stall runs right after it, and finds every lease expired.
    await admin.execute_command("DEBUG", "SLEEP", TTL * 1.25)
    after = await server_ms(admin)
    await eventually(lambda: renewed_since(admin, pool_name, after), 10, "all renewed")
    await eventually(lambda: runs_exactly_once(events_file, keys, {}), 15, "settled again")
    assert {w.id for w in await client.pool_workers()} == workers
    assert moved(events_file) == []
    assert declared_dead(events_file) == []
    check_no_overlap(episodes(events_file, {}))
    await client.close()
    await admin.aclose()


async def test_a_node_closing_right_after_an_outage_declares_nobody_dead(
    members, pool_name, events_file, fresh_redis
):
    server = fresh_redis(appendonly=True)
    procs, client, keys, workers = await _pool(members, server.url, pool_name, events_file)
    server.stop()
    await asyncio.sleep(TTL * 1.5)  # the outage: every lease runs out meanwhile
    for proc in procs:  # the worker nodes are slow to come back; the client is not
        proc.signal(signal.SIGSTOP)
    try:
        server.start()
        admin = aioredis.Redis.from_url(server.url)
        back = await server_ms(admin)
        await eventually(lambda: renewed_since(admin, pool_name, back, client.id), 10, "beat")
        await client.close()  # its beat is the first one after the client's own renewal
    finally:
        for proc in procs:
            proc.signal(signal.SIGCONT)
    await eventually(lambda: renewed_since(admin, pool_name, back), 10, "all renewed")
    await eventually(lambda: runs_exactly_once(events_file, keys, {}), 15, "settled again")
    registered = {raw.decode() for raw in await admin.hkeys(Keys(pool_name).workers)}
    assert registered == workers
    assert moved(events_file) == []
    assert declared_dead(events_file) == []
    await admin.aclose()

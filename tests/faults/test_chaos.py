"""30 seconds of chaos over 300 jobs: random kills, pauses, graceful restarts, Redis restarts
and killed connections, with dispatch and stop traffic throughout. Afterwards every job Redis
holds runs exactly once, and no key ever ran on two processes at once."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time

import redis.asyncio as aioredis

import redpool
from tests.helpers import eventually
from tests.invariants import check_no_overlap, episodes, runs_exactly_once, unsettled

TTL = 1.0
SECONDS = 30


async def test_thirty_seconds_of_chaos(members, pool_name, events_file, fresh_redis, report):
    server = fresh_redis(appendonly=True)
    args = ("--workers", "2", "--ttl", str(TTL))
    procs = [await members(*args, url=server.url) for _ in range(4)]
    client = await redpool.add_node(
        pool_name, server.url, client_only=True, worker_ttl=TTL, max_queued_jobs=10_000
    )
    keys = [f"job-{i}" for i in range(300)]
    await asyncio.gather(*(client.dispatch_job(k) for k in keys))
    killed: dict[int, int] = {}
    rng = random.Random(2026)
    actions: list[str] = []
    traffic = asyncio.create_task(_traffic(client, rng))
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        action = rng.choice(["kill", "pause", "term", "redis", "conns"])
        actions.append(action)
        if action in ("kill", "pause", "term"):
            victim = procs.pop(rng.randrange(len(procs)))
            if action == "kill":
                victim.kill()
                assert victim.killed_at is not None
                killed[victim.pid] = victim.killed_at
            elif action == "pause":
                victim.signal(signal.SIGSTOP)
                await asyncio.sleep(2 * TTL)
                victim.signal(signal.SIGCONT)
                procs.append(victim)
                continue
            else:
                await victim.terminate()
            procs.append(await members(*args, url=server.url))
        elif action == "redis":
            server.stop(signal.SIGKILL)
            server.start()
        else:
            await _kill_connections(server.url)
        await asyncio.sleep(rng.uniform(0.5, 2.0))
    traffic.cancel()

    admitted: list[str] = []

    async def settled() -> bool:
        admitted[:] = await client.job_keys()
        return runs_exactly_once(events_file, admitted, killed)

    try:
        await eventually(settled, 20, "every admitted job runs exactly once")
    except AssertionError as exc:
        records = await _records(server.url, pool_name, admitted, events_file, killed)
        raise AssertionError(
            f"{exc}; {unsettled(events_file, admitted, killed)}; records: {records}"
        ) from None
    assert set(keys) <= set(await client.job_keys()), "a job was lost"
    check_no_overlap(episodes(events_file, killed), strict=False)
    report(f"chaos: {SECONDS}s, actions {sorted(actions)}; all 300 jobs running once at the end")
    await client.close()


async def _traffic(client: redpool.Node, rng: random.Random) -> None:
    while True:
        key = f"extra-{rng.randrange(50)}"
        with contextlib.suppress(redpool.PoolError):
            await client.dispatch_job(key)
            await client.stop_job(key)
        await asyncio.sleep(0.01)


async def _records(url, pool, keys, events_file, killed) -> list[str]:
    """What Redis says of the keys that do not run exactly once (for a failure message)."""
    from redpool._codec import decode_record
    from redpool._keys import Keys
    from tests.invariants import episodes, running_at_end

    now = running_at_end(episodes(events_file, killed))
    bad = [k for k in keys if len(now.get(k, [])) != 1][:8]
    k = Keys(pool)
    admin = aioredis.Redis.from_url(url)
    seconds, micros = await admin.time()
    out = [f"server now {seconds * 1000 + micros // 1000}"]
    for key in bad:
        rec = decode_record(await admin.hget(k.jobs, key))
        lease = await admin.zscore(k.leases, rec.worker) if rec.worker else None
        registered = await admin.hexists(k.workers, rec.worker) if rec.worker else None
        pending = await admin.zscore(k.pending, key)
        out.append(
            f"{key}: w={rec.worker} s={rec.state} e={rec.epoch} pending={pending} "
            f"lease={lease} registered={registered}"
        )
    await admin.aclose()
    return out


async def _kill_connections(url: str) -> None:
    admin = aioredis.Redis.from_url(url)
    me = (await admin.client_info())["id"]
    for conn in await admin.client_list():
        if int(conn["id"]) != me:
            await admin.client_kill_filter(_id=conn["id"])
    await admin.aclose()

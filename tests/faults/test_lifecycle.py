"""The life of a pool across real processes: a shutdown whose initiator dies is finished by the
next add_node after its deadline; purge_pool() clears a dead pool; Redis restarted empty is
detected (jobs reported and stopped, workers rejoin, tickers and schedules go on); a node paused
through a shutdown never rejoins the next pool of that name."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
import redis.asyncio as aioredis

import redpool
from tests.helpers import Recorder, eventually
from tests.invariants import events_of, runs_exactly_once, unsettled
from tests.procs import Member, read_history, running_now


def _key(pool: str, name: str) -> bytes:
    return f"redpool:{{{pool}}}:{name}".encode()


async def _closed_by_shutdown(member: Member) -> bool:
    """The member's node refuses work because its pool is gone (a query racing its close
    may fail otherwise; the next one tells)."""
    await member.send("keys")
    return (await member.answer()).startswith("error PoolShuttingDownError")


async def _server_ms(redis: aioredis.Redis) -> int:
    seconds, micros = await redis.time()
    return seconds * 1000 + micros // 1000


async def _server_ms_after(redis: aioredis.Redis, ms: int) -> bool:
    return await _server_ms(redis) > ms


async def _add_node_once_possible(pool: str, url: str, timeout: float) -> redpool.Node:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await redpool.add_node(pool, url, worker_ttl=1.0, ack_grace_period=1.0)
        except redpool.PoolShuttingDownError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_a_shutdown_whose_initiator_died_is_finished_by_add_node_after_its_deadline(
    members, pool_name, events_file, redis_url, redis: aioredis.Redis
):
    slow = await members("--workers", "1", "--slow-stop", "4")
    initiator = await members("--client", "--workers", "0", "--shutdown-ttl", "1.5")
    keys = [f"job-{i}" for i in range(5)]
    for key in keys:
        await initiator.ask(f"dispatch {key}")
    await initiator.send("shutdown")
    await eventually(lambda: redis.hexists(_key(pool_name, "meta"), "shutdown"), 5, "shutting down")
    initiator.signal(signal.SIGTERM)  # while the slow member's stop() calls still run
    assert await initiator.wait() == 0

    with pytest.raises(redpool.PoolShuttingDownError, match=r"purge_pool\(redis, "):
        await redpool.add_node(pool_name, redis_url)
    node = await _add_node_once_possible(pool_name, redis_url, 10)
    try:
        # The old pool is gone: none of its jobs, workers, leases or inboxes are left.
        assert await node.job_keys() == []
        assert await node.pool_workers() == []
        own = {_key(pool_name, n) for n in ("meta", "leases", "ended", f"node:{node.id}:inbox")}
        assert set(await redis.keys(f"redpool:{{{pool_name}}}:*")) == own
        handler = Recorder()
        await node.add_worker(handler)
        await node.dispatch_job("fresh")
        assert "fresh" in handler.running
        # The slow member finishes its stops and leaves; it takes nothing of the new pool.
        await eventually(lambda: _closed_by_shutdown(slow), 10, "the slow member left")
        await eventually(
            lambda: all(p == [] for p in running_now(read_history(events_file, {})).values()),
            10,
            "the slow member stopped its jobs",
        )
        assert sorted(read_history(events_file, {}).intervals) == keys
    finally:
        await node.close()


async def test_purge_pool_clears_a_dead_pool_and_its_live_members_close_themselves(
    members, pool_name, events_file, redis_url, redis: aioredis.Redis
):
    live = await members("--workers", "2")
    dead = await members("--workers", "1")
    keys = [f"job-{i}" for i in range(10)]
    for key in keys:
        await live.ask(f"dispatch {key}")
    await live.ask("schedule plans 0.2")
    await live.ask("notify job-0 note")
    dead.kill()
    await redpool.purge_pool(redis_url, pool_name)
    assert await redis.keys(f"redpool:{{{pool_name}}}:*") == [_key(pool_name, "ended")]

    await eventually(lambda: _closed_by_shutdown(live), 10, "the live member closed itself")
    history = read_history(events_file, {dead.pid: time.monotonic_ns()})
    assert all(live.pid not in pids for pids in running_now(history).values())
    # Closing wrote nothing back: the purged pool stays gone.
    assert await redis.keys(f"redpool:{{{pool_name}}}:*") == [_key(pool_name, "ended")]
    node = await redpool.add_node(pool_name, redis_url, worker_ttl=1.0)
    await node.close()


async def test_redis_restarted_empty_is_detected_and_the_pool_recovers(
    members, pool_name, events_file, fresh_redis
):
    server = fresh_redis()  # no AOF: a restart loses every key
    procs = [await members("--workers", "2", url=server.url) for _ in range(2)]
    await procs[0].ask("ticker beat 0.1")
    await procs[1].ask("schedule plans 0.2")
    client = await redpool.add_node(
        pool_name, server.url, client_only=True, worker_ttl=1.0, ack_grace_period=1.0
    )
    keys = [f"job-{i}" for i in range(20)]
    await asyncio.gather(*(client.dispatch_job(k) for k in keys))
    await eventually(lambda: runs_exactly_once(events_file, keys, {}), 10, "settled")
    server.restart()
    restarted = time.monotonic_ns()

    # Every node noticed and said so; each job was stopped and handed to on_state_lost,
    # which dispatched it again: every job runs exactly once.
    def lost() -> set[str]:
        return {key for ns, _, key in events_of(events_file, "lost") if ns > restarted}

    await eventually(lambda: lost() == set(keys), 15, "every running job reported lost")
    await eventually(
        lambda: runs_exactly_once(events_file, keys, {}),
        15,
        lambda: unsettled(events_file, keys, {}),
    )
    stderr = events_file.with_suffix(".stderr").read_text()
    assert stderr.count("pool state lost in Redis") >= 2
    assert sorted(await client.job_keys()) == sorted(keys)

    async def rejoined() -> bool:
        return len(await client.pool_workers()) == 4

    await eventually(rejoined, 10, "every worker rejoined")

    def after_restart(kind: str, name: str) -> int:
        return sum(
            ns > restarted and s.startswith(name) for ns, _, s in events_of(events_file, kind)
        )

    await eventually(lambda: after_restart("ticked", "beat@") >= 5, 10, "the ticker goes on")
    await eventually(lambda: after_restart("plan", "plans") >= 3, 10, "the schedule goes on")
    await client.close()


async def test_a_node_paused_through_a_shutdown_never_rejoins_the_next_pool(
    members, make_node, pool_name, events_file, redis: aioredis.Redis
):
    zombie = await members("--workers", "2")
    old = await make_node(worker_shutdown_ttl=5.0)
    for i in range(6):
        await old.dispatch_job(f"old-{i}")
    zombie.signal(signal.SIGSTOP)
    try:
        # Past the zombie's blocking read (job_sink_block 1 s, server clock): it is not
        # listening when the shutdown event is published, like a partitioned node.
        paused_at = await _server_ms(redis)
        await eventually(lambda: _server_ms_after(redis, paused_at + 1500), 5, "its read ended")
        await old.shutdown()  # the paused member's lease expires; its keys are deleted
        new = await make_node()
        handler = Recorder()
        await new.add_worker(handler)
        await asyncio.gather(*(new.dispatch_job(f"new-{i}") for i in range(10)))
    finally:
        zombie.signal(signal.SIGCONT)
    await eventually(lambda: _closed_by_shutdown(zombie), 10, "the zombie closed itself")
    await asyncio.gather(*(new.dispatch_job(f"later-{i}") for i in range(20)))
    assert len(handler.running) == 30, "every job of the new pool runs on its own worker"
    workers = {w.node_id for w in await new.pool_workers()}
    assert workers == {new.id}, "the zombie rejoined the new pool"
    assert _key(pool_name, f"node:{zombie.node_id}:inbox") not in await redis.keys("*")
    zombie_starts = [k for _, pid, k in events_of(events_file, "start") if pid == zombie.pid]
    assert sorted(zombie_starts) == [f"old-{i}" for i in range(6)]

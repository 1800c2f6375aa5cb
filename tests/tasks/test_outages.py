"""Outages and bad data: a Redis restart (AOF) loses no submitted job, a restart of every
worker resumes every unfinished job, corrupt records are skipped."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

import redpool
from tests.helpers import eventually
from tests.redis_server import RedisServer
from tests.tasks.conftest import TaskWorkerProc, read_events
from tests.tasks.sample_tasks import AddParams, add, sleep

Workers = Callable[..., Awaitable[TaskWorkerProc]]
MakeNode = Callable[..., Awaitable[redpool.Node]]


@pytest.fixture
async def aof_server(fresh_redis: Callable[..., RedisServer]) -> AsyncIterator[RedisServer]:
    yield fresh_redis(True, "--appendfsync", "always")


async def test_a_redis_restart_loses_no_submitted_job(
    aof_server: RedisServer, pool_name: str, task_workers: Workers, task_events: Path
) -> None:
    node = await redpool.add_node(pool_name, aof_server.url, worker_ttl=1.0, job_sink_block=1.0)
    try:
        running = await node.submit(sleep, {"s": 1.0}, key="running")
        await task_workers(1, url=aof_server.url)
        await eventually(lambda: len(read_events(task_events)) == 1, what="started")
        queued = [await node.submit(add, AddParams(i, i)) for i in range(5)]
        aof_server.stop(signal.SIGKILL)  # the AOF (fsync always) is all that survives
        aof_server.start()
        for i, handle in enumerate(queued):
            assert (await handle.result(timeout=20)).total == 2 * i
        assert (await running.wait(timeout=20)).status is redpool.Status.SUCCEEDED
    finally:
        await node.close()


async def test_a_restart_of_every_worker_resumes_every_unfinished_job(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    first = await task_workers(1)
    node = await make_node(client_only=True)
    handles = [await node.submit(sleep, {"s": 0.5}) for _ in range(3)]
    await eventually(lambda: len(read_events(task_events)) == 1, what="one started")
    first.kill()
    await first.proc.wait()
    await task_workers(1)  # the whole pool of workers is new
    for handle in handles:
        assert (await handle.wait(timeout=20)).status is redpool.Status.SUCCEEDED
    assert sum([(await h.info()).interrupts for h in handles]) == 1


async def test_a_corrupt_record_written_by_hand_is_skipped_and_the_loops_survive(
    make_node: MakeNode, task_workers: Workers, redis: Redis, pool_name: str
) -> None:
    node = await make_node()
    prefix = f"redpool:{{{pool_name}}}:t:"
    await redis.hset(prefix + "jobs", "bad", b"\xc1not msgpack")
    await redis.zadd(prefix + "status:queued", {"bad": 0})
    await redis.zadd(prefix + "delayed", {"bad": 0})
    with pytest.raises(redpool.PoolError, match="corrupt"):
        await node.job("bad").status()
    assert (await node.jobs.list()).items == []
    await task_workers()
    assert (await node.run(add, AddParams(1, 1), timeout=10)).total == 2  # upkeep survived
    fresh = await node.submit(add, AddParams(2, 2), key="bad")  # a new job replaces it
    assert (await fresh.result(timeout=10)).total == 4


async def test_a_cancel_request_survives_a_redis_restart(
    aof_server: RedisServer, pool_name: str, task_workers: Workers, task_events: Path
) -> None:
    node = await redpool.add_node(
        pool_name, aof_server.url, worker_ttl=1.0, job_sink_block=1.0, client_only=True
    )
    try:
        doomed = await task_workers(1, url=aof_server.url)
        handle = await node.submit(sleep, {"s": 30}, key="orphan")
        await eventually(lambda: len(read_events(task_events)) == 1, what="started")
        doomed.kill()  # its cancel message goes nowhere: only the flag in Redis can end it
        await doomed.proc.wait()
        assert await handle.cancel(wait=False) is redpool.Status.CANCELING
        aof_server.stop(signal.SIGKILL)
        aof_server.start()
        await task_workers(1, url=aof_server.url)
        info = await handle.wait(timeout=20)
        assert info.status is redpool.Status.CANCELED
        probe = await node.submit(sleep, {"s": 0.01}, key="probe")
        await probe.wait(timeout=20)
        assert [e[3] for e in read_events(task_events) if e[2] == "start"] == ["orphan", "probe"]
    finally:
        await node.close()

"""History with retention: finished jobs are kept for their keep time and at most
max_retained per pool, purged in bounded batches with nothing left behind; each key's runs
are capped; the history is listed newest first with a cursor that purges do not move."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

import redpool
from redpool.tasks._runtime import RETAIN_BATCH
from tests.helpers import eventually
from tests.redis_server import RedisServer
from tests.tasks.conftest import TaskWorkerProc
from tests.tasks.sample_tasks import AddParams, add, boom, brief, echo, flaky, sleep

Workers = Callable[..., Awaitable[TaskWorkerProc]]
MakeNode = Callable[..., Awaitable[redpool.Node]]


async def _gone(handle: redpool.JobHandle[Any]) -> bool:
    try:
        await handle.info()
    except redpool.JobNotFoundError:
        return True
    return False


async def _finish(node: redpool.Node, task: Any, params: Any, **kwargs: Any) -> str:
    """Submit a job and wait until it ended; its key."""
    handle = await node.submit(task, params, **kwargs)
    await handle.wait(timeout=10)
    return handle.key


async def test_finished_jobs_are_purged_after_the_keep_time_stored_at_submit(
    make_node: MakeNode, task_workers: Workers
) -> None:
    # The worker's node keeps jobs for its defaults (a day, 7 days): the stored values rule.
    await task_workers()
    client = await make_node(client_only=True)
    short = await client.submit(add, AddParams(1, 2), keep=0.3, keep_failed=60)
    failed_short = await client.submit(boom, None, keep=60, keep_failed=0.3)
    failed_long = await client.submit(boom, None, keep=0.3, keep_failed=60)
    by_task = await client.submit(brief, "x")  # the task's own keep=0.3
    kept = await client.submit(add, AddParams(2, 2))  # the node's default: a day
    for handle in (short, failed_short, failed_long, by_task, kept):
        await handle.wait(timeout=10)
    for handle in (short, failed_short, by_task):
        await eventually(lambda h=handle: _gone(h), what=f"{handle.key} purged")  # type: ignore[misc]
        with pytest.raises(redpool.JobNotFoundError):
            await handle.result(timeout=1)
        with pytest.raises(redpool.JobNotFoundError):
            await client.job(handle.key).info()
        assert await handle.runs() == []
        assert (await handle.metrics()).runs == 0
    assert (await failed_long.info()).status is redpool.Status.FAILED
    assert (await kept.result(timeout=1)).total == 4


async def test_keep_times_are_validated(make_node: MakeNode) -> None:
    with pytest.raises(redpool.InvalidArgumentError):
        await make_node(max_retained=-1)
    with pytest.raises(redpool.InvalidArgumentError):
        await make_node(default_keep=-1.0)
    node = await make_node()
    with pytest.raises(redpool.InvalidArgumentError):
        await node.submit(add, AddParams(1, 1), keep=-1)
    with pytest.raises(redpool.InvalidArgumentError):
        redpool.Tasks(keep_failed=float("inf"))


async def test_max_retained_keeps_exactly_the_newest_finished_jobs(
    make_node: MakeNode, task_workers: Workers
) -> None:
    await task_workers()
    node = await make_node(max_retained=100)
    keys = [await _finish(node, add, AddParams(i, 0)) for i in range(150)]

    async def purged_down() -> bool:
        return (await node.jobs.stats()).statuses[redpool.Status.SUCCEEDED] == 100

    await eventually(purged_down, timeout=30, what="purged down to max_retained")
    for key in keys[:50]:
        assert await _gone(node.job(key)), key
    for key in keys[50:]:
        assert (await node.job(key).info()).status is redpool.Status.SUCCEEDED


async def test_thousands_of_finished_jobs_beyond_max_retained_go_in_bounded_batches(
    make_node: MakeNode,
) -> None:
    # max_retained 100,000: its own loop purges none of these. 5,000 cancels on a loaded
    # machine: calls get the default time before RedisUnavailableError, not the tests' 2 s.
    node = await make_node(ack_grace_period=20.0)
    handles = await node.submit_many([(add, AddParams(i, 0)) for i in range(5000)])
    for at in range(0, 5000, 100):  # no worker: canceling a queued job ends it at once
        await asyncio.gather(*(h.cancel() for h in handles[at : at + 100]))
    assert (await node.jobs.stats()).statuses[redpool.Status.CANCELED] == 5000
    batches = []
    more = True
    while more:  # what every node's retention loop does, with max_retained=100
        batch = await node._layer().scripts.retain(RETAIN_BATCH, 100)
        assert batch.expired == 0 and batch.evicted <= RETAIN_BATCH
        batches.append(batch.evicted)
        more = batch.more
    assert sum(batches) == 4900
    assert len(batches) == math.ceil(4900 / RETAIN_BATCH)
    page = await node.jobs.list(status=redpool.Status.CANCELED, limit=1000)
    assert page.cursor is None
    assert {info.key for info in page.items} == {h.key for h in handles[-100:]}  # the last batch
    ends = [info.finished_at for info in page.items]
    assert ends == sorted(ends, reverse=True)  # type: ignore[type-var]
    for handle in handles[:-100:50]:
        assert await _gone(handle)


async def test_the_runs_of_a_key_are_capped_at_20(
    make_node: MakeNode, task_workers: Workers, redis: Redis, pool_name: str
) -> None:
    await task_workers()
    node = await make_node()
    generations = []
    for i in range(30):
        handle = await node.submit(add, AddParams(i, 0), key="again")
        await handle.wait(timeout=10)
        generations.append(handle.generation)
    runs = await node.job("again").runs(limit=100)
    assert [run.generation for run in runs] == generations[::-1][:20]
    assert await redis.llen(f"redpool:{{{pool_name}}}:t:runs:again") == 20
    assert (await node.job("again").metrics()).runs == 30  # the counters count every run


async def test_history_is_listed_newest_first_filtered_and_paged_across_purges(
    make_node: MakeNode, task_workers: Workers
) -> None:
    await task_workers()
    node = await make_node()
    ended: list[tuple[str, str, str]] = []  # (key, task, tenant), in finish order
    for i in range(30):
        task, tenant = (boom if i % 3 == 0 else add), ("a" if i % 2 else "b")
        key = await _finish(node, task, None if task is boom else AddParams(i, 0), tenant=tenant)
        ended.append((key, task.name, tenant))
    newest_first = [key for key, _, _ in reversed(ended)]

    async def listed(**filters: Any) -> list[str]:
        keys: list[str] = []
        cursor = None
        while True:
            page = await node.jobs.list(limit=4, cursor=cursor, **filters)
            assert len(page.items) <= 4
            keys += [info.key for info in page.items]
            if page.cursor is None:
                return keys
            cursor = page.cursor

    ok, failed = redpool.Status.SUCCEEDED, redpool.Status.FAILED
    assert await listed(status=ok) == [k for k, t, _ in reversed(ended) if t == "add"]
    assert await listed(status={ok, failed}) == newest_first
    assert await listed() == newest_first  # nothing active: all of it is history
    assert await listed(status={ok, failed}, tenant="a") == [
        k for k, _, n in reversed(ended) if n == "a"
    ]
    assert await listed(status=failed, task="boom", tenant="b") == [
        k for k, t, n in reversed(ended) if t == "boom" and n == "b"
    ]
    assert await listed(status=failed, task="add") == []

    # A cursor is a place in the history: jobs added or purged meanwhile move nothing.
    first = await node.jobs.list(status={ok, failed}, limit=5)
    assert [i.key for i in first.items] == newest_first[:5]
    batch = await node._layer().scripts.retain(RETAIN_BATCH, 20)  # the 10 oldest go
    assert batch.evicted == 10
    added = [await _finish(node, add, AddParams(0, 0)) for _ in range(3)]
    rest = await node.jobs.list(status={ok, failed}, limit=100, cursor=first.cursor)
    assert [i.key for i in rest.items] == newest_first[5:20]
    assert (await node.jobs.list(status=ok, limit=3)).items[0].key == added[-1]


async def test_active_jobs_are_listed_oldest_first_with_a_cursor_new_jobs_do_not_move(
    make_node: MakeNode,
) -> None:
    node = await make_node()  # no worker: every job stays queued
    keys = [(await node.submit(sleep, {"s": 1}, key=f"q{i}")).key for i in range(6)]
    first = await node.jobs.list(status=redpool.Status.QUEUED, limit=3)
    assert [i.key for i in first.items] == keys[:3]
    await node.job("q0").delete()
    later = (await node.submit(sleep, {"s": 1}, key="later")).key
    rest = await node.jobs.list(status=redpool.Status.QUEUED, limit=10, cursor=first.cursor)
    assert [i.key for i in rest.items] == [*keys[3:], later] and rest.cursor is None


async def test_once_every_job_is_purged_the_pool_has_only_its_fixed_tasks_keys(
    fresh_redis: Callable[..., RedisServer], task_workers: Workers, pool_name: str
) -> None:
    server = fresh_redis()
    await task_workers(4, url=server.url)
    node = await redpool.add_node(pool_name, server.url, worker_ttl=1.0, job_sink_block=1.0)
    redis = Redis.from_url(server.url)
    purger: redpool.Node | None = None
    try:
        prefix = f"redpool:{{{pool_name}}}:t:"
        before = {k.decode() for k in await redis.keys(f"{prefix}*")}
        handles = [
            await node.submit(add, AddParams(1, 2), idempotency_key="once", tenant="acme"),
            await node.submit(boom, None, labels={"l": "v"}),
            await node.submit(flaky, {"succeed_at": 2}),  # a retry
            await node.submit(echo, "first", key="fifo"),
            await node.submit(echo, "second", key="fifo", if_active="queue"),
            await node.submit(sleep, {"s": 60}, queue="nobody"),  # queued, then canceled
            await node.submit(sleep, {"s": 60}, delay=60),  # scheduled, then canceled
            await node.submit(sleep, {"s": 60}),  # running, then canceled
        ]
        handles += await node.submit_many([(add, AddParams(i, i)) for i in range(50)])
        await eventually(lambda: _is_running(handles[7]), what="running")
        for handle in handles[5:8]:
            await handle.cancel()
        for handle in handles:
            assert (await handle.wait(timeout=10)).status.terminal
        # Finished jobs are on no worker and in no queue: only in the history.
        mid = {k.decode().removeprefix(prefix) for k in await redis.keys(f"{prefix}*")}
        assert not {k for k in mid if k.startswith(("ready:", "active:", "wq:", "wruns:"))}
        assert "delayed" not in mid

        purger = await redpool.add_node(
            pool_name, server.url, worker_ttl=1.0, job_sink_block=1.0, max_retained=0
        )
        await purger.submit(add, AddParams(0, 0))  # its tasks layer (and retention) starts
        for handle in handles:
            await eventually(lambda h=handle: _gone(h), what=f"{handle.key} purged")  # type: ignore[misc]
        await eventually(lambda: _no_jobs(redis, prefix), what="every job purged")
        after = {k.decode() for k in await redis.keys(f"{prefix}*")}
        per_job = ("data:", "runs:", "stats:", "next:", "status:", "ready:", "active:", "wq:")
        assert {k for k in after if k.removeprefix(prefix).startswith(per_job)} == set()
        fixed = ("meta", "idem", "idem_expiry", f"inbox:{node.id}", f"inbox:{purger.id}")
        assert after - before <= {prefix + name for name in fixed}
    finally:
        for one in (node, purger):
            if one is not None:
                await one.close()
        await redis.aclose()


async def _no_jobs(redis: Redis, prefix: str) -> bool:
    return await redis.hlen(prefix + "jobs") == 0


async def _is_running(handle: redpool.JobHandle[Any]) -> bool:
    return await handle.status() is redpool.Status.RUNNING

"""Submit, run in another process, result from any node; the status machine."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

import redpool
from tests.helpers import eventually
from tests.tasks.conftest import TaskWorkerProc, read_events
from tests.tasks.sample_tasks import AddParams, AddResult, add, boom, signal, sleep, stuck
from tests.tasks.sample_tasks import tasks as tasks_registry

Workers = Callable[..., Awaitable[TaskWorkerProc]]
MakeNode = Callable[..., Awaitable[redpool.Node]]


async def test_a_job_submitted_from_a_client_runs_in_a_worker_process_and_any_node_gets_the_result(
    make_node: MakeNode, task_workers: Workers
) -> None:
    worker = await task_workers()
    client = await make_node(client_only=True)
    other = await make_node()
    handle = await client.submit(add, AddParams(2, 3))
    result = await handle.result(timeout=10)
    assert isinstance(result, AddResult)
    assert result.total == 5
    assert result.worker.startswith(worker.node_id + ".")
    assert await other.job(handle.key).result(timeout=10) == {"total": 5, "worker": result.worker}
    info = await other.job(handle.key).info()
    assert info.status is redpool.Status.SUCCEEDED
    assert info.task == "add" and info.attempt == 1 and info.finished_at is not None


async def test_node_run_submits_and_returns_the_result(
    make_node: MakeNode, task_workers: Workers
) -> None:
    await task_workers()
    node = await make_node()
    assert (await node.run(add, AddParams(1, 1), timeout=10)).total == 2


async def test_a_job_goes_from_queued_through_running_to_succeeded(
    make_node: MakeNode, task_workers: Workers
) -> None:
    node = await make_node(client_only=True)
    handle = await node.submit(sleep, {"s": 0.5}, key="sleepy")
    assert await handle.status() is redpool.Status.QUEUED  # no worker yet
    await task_workers()
    await eventually(lambda: _is(handle, redpool.Status.RUNNING), what="running")
    info = await handle.wait(timeout=10)
    assert info.status is redpool.Status.SUCCEEDED
    assert await handle.result() == "slept"


async def test_a_failing_task_ends_failed_with_its_error(
    make_node: MakeNode, task_workers: Workers
) -> None:
    await task_workers()
    node = await make_node()
    handle = await node.submit(boom, None)
    with pytest.raises(redpool.JobFailedError) as caught:
        await handle.result(timeout=10)
    error = caught.value.info.error
    assert error is not None and error.type == "ValueError" and error.message == "boom"
    assert "raise ValueError" in error.traceback
    assert caught.value.info.attempt == 1  # default: no retry


async def test_a_result_of_an_unknown_key_raises_job_not_found(make_node: MakeNode) -> None:
    node = await make_node()
    with pytest.raises(redpool.JobNotFoundError):
        await node.job("nope").result(timeout=1)
    with pytest.raises(redpool.JobNotFoundError):
        await node.job("nope").info()


async def test_a_wait_that_times_out_leaves_the_job_alone(
    make_node: MakeNode, task_workers: Workers
) -> None:
    await task_workers()
    node = await make_node()
    handle = await node.submit(sleep, {"s": 1.0})
    with pytest.raises(TimeoutError):
        await handle.wait(timeout=0.2)
    assert (await handle.wait(timeout=10)).status is redpool.Status.SUCCEEDED


async def _is(handle: redpool.JobHandle[object], status: redpool.Status) -> bool:
    return await handle.status() is status


async def test_jobs_are_listed_by_status_in_pages_and_counted(
    make_node: MakeNode, task_workers: Workers
) -> None:
    node = await make_node()
    queued = [await node.submit(sleep, {"s": 0.01}, key=f"q{i}", tenant="acme") for i in range(5)]
    await node.submit(sleep, {"s": 0.01}, key="later", delay=60)
    keys: list[str] = []
    cursor = None
    while True:
        page = await node.jobs.list(status=redpool.Status.QUEUED, limit=2, cursor=cursor)
        assert len(page.items) <= 2
        keys += [info.key for info in page.items]
        if page.cursor is None:
            break
        cursor = page.cursor
    assert keys == [h.key for h in queued]  # oldest first
    both = await node.jobs.list(status={redpool.Status.QUEUED, redpool.Status.SCHEDULED})
    assert {i.key for i in both.items} == {*keys, "later"} and both.cursor is None
    assert (await node.jobs.list(tenant="nobody")).items == []
    stats = await node.jobs.stats()
    assert stats.statuses[redpool.Status.QUEUED] == 5
    assert stats.statuses[redpool.Status.SCHEDULED] == 1
    worker = await task_workers(2)
    for handle in queued:
        await handle.wait(timeout=10)
    stats = await node.jobs.stats()
    assert stats.statuses[redpool.Status.SUCCEEDED] == 5
    assert stats.statuses[redpool.Status.QUEUED] == 0
    assert stats.queues["default"].ready == 0
    [(worker_id, worker_stats)] = stats.workers.items()
    assert worker_id.startswith(worker.node_id) and worker_stats.concurrency == 2


async def test_shutdown_deletes_every_tasks_key_of_the_pool(
    make_node: MakeNode, redis: Redis, pool_name: str
) -> None:
    node = await make_node()
    await node.add_task_worker(tasks_registry, concurrency=1)
    await node.configure_queue("default", max_running=5)
    done = await node.submit(add, AddParams(1, 2), idempotency_key="once")
    await done.wait(timeout=10)
    await node.submit(sleep, {"s": 30})  # running
    await node.submit(sleep, {"s": 30})  # queued
    await node.submit(sleep, {"s": 30}, delay=60)  # scheduled
    assert await redis.keys(f"redpool:{{{pool_name}}}:t:*")
    await node.shutdown()
    tombstone = f"redpool:{{{pool_name}}}:ended".encode()  # the one key a shutdown keeps
    assert await redis.keys(f"redpool:{{{pool_name}}}:*") == [tombstone]


async def test_submit_many_admits_a_batch_in_one_call_and_each_job_runs(
    make_node: MakeNode, task_workers: Workers, redis: Redis
) -> None:
    node = await make_node(client_only=True)
    await node.jobs.stats()  # the node's tasks layer is up (its first upkeep ran)
    before = (await redis.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)
    handles = await node.submit_many([(add, AddParams(i, 1)) for i in range(600)])
    after = (await redis.info("commandstats")).get("cmdstat_evalsha", {}).get("calls", 0)
    assert len({h.key for h in handles}) == 600
    assert after - before <= 10  # two task_submit calls (500 + 100) and beats, not 600
    await task_workers(4)
    totals = [(await h.result(timeout=30)).total for h in handles[::50]]
    assert totals == [i + 1 for i in range(0, 600, 50)]


async def test_a_client_only_node_submits_waits_cancels_and_lists(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    await task_workers(1)
    client = await make_node(client_only=True)
    assert (await (await client.submit(add, AddParams(4, 5))).result(timeout=10)).total == 9
    running = await client.submit(sleep, {"s": 30}, key="running")
    await eventually(lambda: len(read_events(task_events)) == 1, what="running elsewhere")
    queued = await client.submit(sleep, {"s": 30}, key="queued")  # the only slot is taken
    page = await client.jobs.list(status={redpool.Status.RUNNING, redpool.Status.QUEUED})
    assert {(i.key, i.status) for i in page.items} == {
        ("running", redpool.Status.RUNNING),
        ("queued", redpool.Status.QUEUED),
    }
    stats = await client.jobs.stats()
    assert stats.statuses[redpool.Status.RUNNING] == 1
    assert stats.queues["default"].ready == 1 and stats.queues["default"].active == 1
    assert await queued.cancel() is redpool.Status.CANCELED
    assert await running.cancel(timeout=10) is redpool.Status.CANCELED
    assert (await running.info()).status is redpool.Status.CANCELED
    assert [e[2] for e in read_events(task_events)] == ["start", "stopped"]  # queued never ran


async def test_node_run_raises_the_outcomes_error_with_its_info_or_wait_timeout(
    make_node: MakeNode, task_workers: Workers
) -> None:
    await task_workers(2)
    node = await make_node()
    with pytest.raises(redpool.JobFailedError) as failed:
        await node.run(boom, None, timeout=10)
    assert failed.value.info.status is redpool.Status.FAILED
    assert failed.value.info.error is not None and failed.value.info.error.type == "ValueError"
    with pytest.raises(redpool.JobTimedOutError) as timed_out:
        await node.run(stuck, None, timeout=10)  # the task's own timeout: 0.3 s
    assert timed_out.value.info.status is redpool.Status.TIMED_OUT
    with pytest.raises(redpool.JobSkippedError) as skipped:
        await node.run(signal, "skip", timeout=10)
    assert skipped.value.info.status is redpool.Status.SKIPPED
    with pytest.raises(redpool.WaitTimeoutError):
        await node.run(sleep, {"s": 30}, timeout=0.3)
    [running] = (await node.jobs.list(status=redpool.Status.RUNNING)).items
    assert running.task == "sleep"  # the job goes on after the wait ran out
    other = await make_node(client_only=True)
    call = asyncio.ensure_future(node.run(sleep, {"s": 30}, timeout=10))
    await eventually(_two_running(other), what="the second sleep runs")
    [*_, latest] = (await other.jobs.list(status=redpool.Status.RUNNING)).items
    await other.job(latest.key).cancel(timeout=10)
    with pytest.raises(redpool.JobCanceledError) as canceled:
        await call
    assert canceled.value.info.status is redpool.Status.CANCELED
    assert all(
        isinstance(e.value, redpool.JobUnsuccessfulError)
        for e in (failed, timed_out, skipped, canceled)
    )


def _two_running(node: redpool.Node) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len((await node.jobs.list(status=redpool.Status.RUNNING)).items) == 2

    return check


class _GatedStop:
    """A service handler whose stop() waits for the test: the pool's shutdown stays under
    way meanwhile."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def start(self, job: redpool.Job) -> None:
        pass

    async def stop(self, key: str) -> None:
        await self.release.wait()


async def test_submit_during_and_after_a_pool_shutdown_or_after_close_raises_at_once(
    make_node: MakeNode, redis: Redis, pool_name: str
) -> None:
    owner, client, closed = [await make_node() for _ in range(3)]
    await closed.close()
    with pytest.raises(redpool.PoolClosedError) as caught:
        await closed.submit(add, AddParams(1, 1))
    assert not isinstance(caught.value, redpool.PoolShuttingDownError)
    handler = _GatedStop()
    await owner.add_worker(handler)
    await owner.dispatch_job("service")
    await client.submit(add, AddParams(1, 1))  # the client's tasks layer is up
    shutdown = asyncio.ensure_future(owner.shutdown())
    meta = f"redpool:{{{pool_name}}}:meta"
    await eventually(lambda: redis.hexists(meta, "shutdown"), what="the shutdown began")
    with pytest.raises(redpool.PoolShuttingDownError):  # PoolClosedError's subclass
        await asyncio.wait_for(client.submit(add, AddParams(1, 1)), 5)
    handler.release.set()
    await asyncio.wait_for(shutdown, 20)
    with pytest.raises(redpool.PoolShuttingDownError):
        await asyncio.wait_for(client.submit(add, AddParams(1, 1)), 5)
    with pytest.raises(redpool.PoolShuttingDownError):
        await asyncio.wait_for(owner.submit_many([(add, AddParams(1, 1))]), 5)

"""Timeouts and cancels that stop the code; singleton keys; idempotency."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

import redpool
from tests.helpers import eventually
from tests.procs import ROOT
from tests.tasks.conftest import TaskWorkerProc, read_events
from tests.tasks.sample_tasks import AddParams, add, sleep, steps

Workers = Callable[..., Awaitable[TaskWorkerProc]]
MakeNode = Callable[..., Awaitable[redpool.Node]]


async def test_a_timeout_cancels_the_running_code_and_ends_the_job_timed_out(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    await task_workers()
    node = await make_node()
    handle = await node.submit(sleep, {"s": 30}, timeout=0.3)  # submit overrides the task
    with pytest.raises(redpool.JobTimedOutError) as caught:
        await handle.result(timeout=10)
    assert caught.value.info.status is redpool.Status.TIMED_OUT
    assert [e[2] for e in read_events(task_events)] == ["start", "stopped"]


async def test_cancel_of_a_running_job_stops_its_code_and_returns_once_it_ended(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    await task_workers()
    node = await make_node(client_only=True)
    handle = await node.submit(sleep, {"s": 30})
    await eventually(lambda: len(read_events(task_events)) == 1, what="started")
    assert await handle.cancel(timeout=10) is redpool.Status.CANCELED
    assert [e[2] for e in read_events(task_events)] == ["start", "stopped"]
    with pytest.raises(redpool.JobCanceledError):
        await handle.result()


async def test_a_cancel_that_comes_before_the_worker_took_the_run_ends_it_canceled(
    make_node: MakeNode,
    task_workers: Workers,
    task_events: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The worker is stopped (SIGSTOP) while the run is placed on it and canceled: the run
    # ends canceled at once, its code never starts, and the worker's slot serves the next
    # job. Flagged 'canceling' instead, its claim refused it and it stayed so until the
    # worker's lease expired (for good on a live worker: cancel_other schedules hung).
    monkeypatch.setenv("REDPOOL_TEST_WORKER_TTL", "30")  # the stop is no lease loss
    worker = await task_workers(1)
    node = await make_node(client_only=True)
    worker.proc.send_signal(signal.SIGSTOP)
    try:
        handle = await node.submit(sleep, {"s": 30})
        assert await handle.status() is redpool.Status.STARTING
        assert await handle.cancel(wait=False) is redpool.Status.CANCELED  # at once
    finally:
        worker.proc.send_signal(signal.SIGCONT)
    again = await node.submit(sleep, {"s": 0})  # the worker's slot is free again
    assert (await again.wait(timeout=10)).status is redpool.Status.SUCCEEDED
    assert [e[2] for e in read_events(task_events)] == ["start", "end"]  # only the second's


async def test_cancel_of_a_queued_job_is_immediate_and_it_never_starts(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    node = await make_node()
    handle = await node.submit(sleep, {"s": 0.01})
    assert await handle.cancel() is redpool.Status.CANCELED
    scheduled = await node.submit(sleep, {"s": 0.01}, delay=0.2)
    assert await scheduled.status() is redpool.Status.SCHEDULED
    assert await scheduled.cancel(wait=False) is redpool.Status.CANCELED
    await task_workers()
    probe = await node.submit(sleep, {"s": 0.01})
    await probe.wait(timeout=10)
    assert len([e for e in read_events(task_events) if e[2] == "start"]) == 1  # the probe


async def test_a_key_is_a_singleton_slot_while_its_job_is_active(
    make_node: MakeNode, task_workers: Workers
) -> None:
    node = await make_node()
    first = await node.submit(sleep, {"s": 0.2}, key="report:1")
    with pytest.raises(redpool.JobExistsError) as caught:
        await node.submit(sleep, {"s": 0.2}, key="report:1")
    assert caught.value.handle == first
    again = await node.submit(sleep, {"s": 0.2}, key="report:1", if_active="return")
    assert again == first and again.existing
    await task_workers()
    await first.wait(timeout=10)
    fresh = await node.submit(add, AddParams(1, 2), key="report:1")  # free again
    assert (await fresh.result(timeout=10)).total == 3


async def test_concurrent_submits_with_one_idempotency_key_admit_one_job(
    make_node: MakeNode, task_workers: Workers
) -> None:
    nodes = [await make_node() for _ in range(3)]
    handles = await asyncio.gather(
        *(nodes[i % 3].submit(add, AddParams(1, 1), idempotency_key="pay-7") for i in range(20))
    )
    assert len({h.key for h in handles}) == 1
    assert sum(not h.existing for h in handles) == 1
    with pytest.raises(redpool.IdempotencyConflictError):
        await nodes[0].submit(add, AddParams(9, 9), idempotency_key="pay-7")
    await task_workers()
    await handles[0].wait(timeout=10)
    replay = await nodes[1].submit(add, AddParams(1, 1), idempotency_key="pay-7")
    assert replay.key == handles[0].key and replay.existing  # after success: the old job
    assert (await replay.result()).total == 2


async def test_concurrent_submits_from_three_processes_with_one_idempotency_key_admit_one_job(
    make_node: MakeNode, redis_url: str, pool_name: str
) -> None:
    node = await make_node(client_only=True)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.tasks.submit_proc",
            redis_url,
            pool_name,
            "7",
            "order-9",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    mine = await asyncio.gather(
        *(node.submit(add, AddParams(1, 1), idempotency_key="order-9") for _ in range(6))
    )
    answers = [(h.key, h.existing) for h in mine]
    for proc in procs:
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0
        answers += [
            (k, bool(int(e))) for k, e in (line.split() for line in out.decode().splitlines())
        ]
    assert len(answers) == 20
    assert len({key for key, _ in answers}) == 1
    assert sum(not existing for _, existing in answers) == 1


async def test_delete_removes_a_finished_or_waiting_job_but_not_a_running_one(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    node = await make_node()
    waiting = await node.submit(sleep, {"s": 0.01}, key="waiting")
    await waiting.delete()
    with pytest.raises(redpool.JobNotFoundError):
        await waiting.status()
    await task_workers()
    running = await node.submit(sleep, {"s": 30}, key="running")
    await eventually(lambda: len(read_events(task_events)) == 1, what="started")
    with pytest.raises(redpool.InvalidTransitionError):
        await running.delete()
    await running.cancel(timeout=10)
    await running.delete()
    with pytest.raises(redpool.JobNotFoundError):
        await running.result(timeout=1)
    with pytest.raises(redpool.JobNotFoundError):
        await running.delete()


async def test_metrics_count_the_runs_of_a_key_across_its_generations(
    make_node: MakeNode, task_workers: Workers
) -> None:
    await task_workers()
    node = await make_node()
    for i in range(3):
        await (await node.submit(add, AddParams(i, i), key="counted")).wait(timeout=10)
    timed_out = await node.submit(sleep, {"s": 30}, key="counted", timeout=0.2)
    await timed_out.wait(timeout=10)
    metrics = await node.job("counted").metrics()
    assert (metrics.runs, metrics.succeeded, metrics.timed_out) == (4, 3, 1)
    assert metrics.max_runtime is not None and metrics.max_runtime >= 0.2
    assert metrics.last_error is not None and metrics.last_error.type == "TimeoutError"
    assert metrics.mean_runtime is not None and metrics.last_finished_at is not None


async def test_progress_recorded_by_a_run_shows_in_info(
    make_node: MakeNode, task_workers: Workers
) -> None:
    await task_workers()
    node = await make_node()
    handle = await node.submit(steps, 3)

    async def done_steps() -> bool:
        progress = (await handle.info()).progress
        return progress is not None and progress.completed == 3

    await eventually(done_steps, what="three steps recorded")
    progress = (await handle.info()).progress
    assert progress is not None
    assert (progress.total, progress.details, progress.percent) == (3, "step 3", 100)
    await handle.cancel(timeout=10)


async def test_a_job_not_started_before_it_expires_is_canceled_and_never_runs(
    make_node: MakeNode, task_workers: Workers, task_events: Path, redis: Redis
) -> None:
    node = await make_node()
    stale = await node.submit(sleep, {"s": 0.01}, key="stale", expires=0.2)
    fresh = await node.submit(sleep, {"s": 0.01}, key="fresh", expires=60)

    async def expired_for_redis() -> bool:  # the Redis clock decides
        seconds, _ = await redis.time()
        info = await stale.info()
        return seconds * 1000 >= info.created_at.timestamp() * 1000 + 200

    await eventually(expired_for_redis, what="the expires time passed")
    await task_workers()
    assert (await fresh.wait(timeout=10)).status is redpool.Status.SUCCEEDED
    with pytest.raises(redpool.JobCanceledError) as caught:
        await stale.result(timeout=10)
    assert caught.value.info.error is not None and caught.value.info.error.type == "Expired"
    assert [e[3] for e in read_events(task_events)] == ["fresh", "fresh"]

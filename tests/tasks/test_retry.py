"""Retries follow the stored policy (Orbit's counts), with waits due on the Redis clock;
signals; bad input on the worker."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import redpool
from tests.tasks.conftest import TaskWorkerProc, read_events
from tests.tasks.sample_tasks import AddParams, flaky, picky, signal, sync_add

Workers = Callable[..., Awaitable[TaskWorkerProc]]
MakeNode = Callable[..., Awaitable[redpool.Node]]


async def test_a_flaky_task_runs_again_after_its_wait_until_it_succeeds(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    await task_workers()
    node = await make_node()
    handle = await node.submit(flaky, {"succeed_at": 3})
    assert await handle.result(timeout=10) == 3
    runs = await handle.runs()
    assert [r.outcome for r in runs] == ["succeeded", "failed", "failed"]
    assert [r.attempt for r in runs] == [3, 2, 1]
    assert runs[1].error is not None and runs[1].error.message == "attempt 2 fails"
    starts = [int(e[0]) for e in read_events(task_events)]
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(starts)]
    assert all(gap >= 0.2 for gap in gaps)  # wait_fixed(0.2), on the Redis clock


async def test_max_attempts_counts_runs_in_all(make_node: MakeNode, task_workers: Workers) -> None:
    await task_workers()
    node = await make_node()
    exhausted = await node.submit(flaky, {"succeed_at": 9})  # the task allows 4
    with pytest.raises(redpool.JobFailedError) as caught:
        await exhausted.result(timeout=10)
    assert caught.value.info.attempt == 4
    once = await node.submit(flaky, {"succeed_at": 9}, retry=redpool.Retry(max_attempts=1))
    with pytest.raises(redpool.JobFailedError) as caught:
        await once.result(timeout=10)
    assert caught.value.info.attempt == 1  # one failure, no retry


async def test_a_retry_predicate_filters_exceptions(
    make_node: MakeNode, task_workers: Workers
) -> None:
    await task_workers()
    node = await make_node()
    not_retried = await node.submit(picky, "ValueError")
    retried = await node.submit(picky, "KeyError")
    with pytest.raises(redpool.JobFailedError) as caught:
        await not_retried.result(timeout=10)
    assert caught.value.info.attempt == 1
    with pytest.raises(redpool.JobFailedError) as caught:
        await retried.result(timeout=10)
    assert caught.value.info.attempt == 5


async def test_skip_fail_and_retry_later_signals(
    make_node: MakeNode, task_workers: Workers
) -> None:
    await task_workers()
    node = await make_node()
    with pytest.raises(redpool.JobSkippedError):
        await (await node.submit(signal, "skip")).result(timeout=10)
    with pytest.raises(redpool.JobFailedError) as caught:
        await (await node.submit(signal, "fail", retry=redpool.Retry(max_attempts=3))).result(
            timeout=10
        )
    assert caught.value.info.attempt == 1  # Fail: no retry
    later = await node.submit(signal, "later", retry=redpool.Retry(max_attempts=2))
    with pytest.raises(redpool.JobFailedError) as caught:
        await later.result(timeout=10)
    assert caught.value.info.attempt == 2


async def test_an_unknown_task_fails_its_job_and_the_worker_keeps_serving(
    make_node: MakeNode, task_workers: Workers
) -> None:
    await task_workers()
    node = await make_node(client_only=True)
    with pytest.raises(redpool.JobFailedError) as caught:
        await (await node.submit("no.such.task", {"x": 1})).result(timeout=10)
    assert caught.value.info.error is not None
    assert caught.value.info.error.type == "UnknownTaskError"
    assert await (await node.submit("sync_add", {"a": 2, "b": 2})).result(timeout=10) == 4


async def test_wrong_params_fail_the_run_with_the_type_error(
    make_node: MakeNode, task_workers: Workers
) -> None:
    await task_workers()
    node = await make_node()
    with pytest.raises(redpool.JobFailedError) as caught:
        await (await node.submit("add", {"a": 1, "nope": 2})).result(timeout=10)
    assert caught.value.info.error is not None and caught.value.info.error.type == "TypeError"
    assert await node.run(sync_add, AddParams(3, 4), timeout=10) == 7

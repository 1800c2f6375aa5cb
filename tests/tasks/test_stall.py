"""Stalled runs (``stall_timeout``): only the owner stops one, and only then does it run
again; a slow run that shows signs of life is never stopped nor copied (SAQ #277)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

import redpool
from tests.tasks.conftest import TaskWorkerProc, read_events
from tests.tasks.sample_tasks import progress_errors, slow_steps, stall_once, sync_stall_once

Workers = Callable[..., Awaitable[TaskWorkerProc]]
MakeNode = Callable[..., Awaitable[redpool.Node]]


async def test_a_stalled_run_is_stopped_by_its_owner_and_runs_again_once(
    make_node: MakeNode, task_workers: Workers, task_events: Path, redis: Redis
) -> None:
    workers = [await task_workers(1), await task_workers(1)]
    node = await make_node(client_only=True)
    handle = await node.submit(stall_once, None, key="hung")
    assert await handle.result(timeout=15) == 1  # the second run: after one interruption
    info = await handle.info()
    assert (info.attempt, info.interrupts) == (1, 1)  # a stall is an interruption
    runs = await handle.runs()
    assert [(r.outcome, r.reason) for r in runs] == [
        ("succeeded", None),
        ("interrupted", "stalled"),
    ]
    assert await redis.llen("test:starts:hung") == 2
    events = sorted(read_events(task_events), key=lambda e: int(e[0]))
    assert [e[2] for e in events] == ["start", "stopped", "start", "end"]
    owner = next(w for w in workers if str(w.proc.pid) == events[0][1])
    assert runs[1].worker_id.startswith(owner.node_id + ".")  # stopped where it ran
    assert events[1][1] == events[0][1]  # by the process that ran it, before the rerun


async def test_a_stalled_sync_run_is_stopped_in_its_thread_and_runs_again_once(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    await task_workers(1)
    node = await make_node(client_only=True)
    handle = await node.submit(sync_stall_once, None, key="spin")
    assert await handle.result(timeout=15) == 1
    runs = await handle.runs()
    assert [(r.outcome, r.reason) for r in runs] == [
        ("succeeded", None),
        ("interrupted", "stalled"),
    ]
    events = sorted(read_events(task_events), key=lambda e: int(e[0]))
    assert [e[2] for e in events] == ["start", "stopped", "start", "end"]


async def test_a_slow_run_that_keeps_showing_progress_is_never_stopped_nor_duplicated(
    make_node: MakeNode, task_workers: Workers, task_events: Path, redis: Redis
) -> None:
    await task_workers(1)
    await task_workers(1)  # idle, and free to take a second copy if one were placed
    node = await make_node(client_only=True)
    handle = await node.submit(slow_steps, 30, key="slow")  # 3 s, stall_timeout 0.5 s
    assert await handle.result(timeout=20) == 30
    assert await redis.llen("test:starts:slow") == 1
    assert [(r.outcome, r.reason) for r in await handle.runs()] == [("succeeded", None)]
    assert [e[2] for e in read_events(task_events)] == ["start", "end"]
    info = await handle.info()
    assert (info.attempt, info.interrupts) == (1, 0)


async def test_progress_past_its_total_or_after_the_run_ended_raises(
    make_node: MakeNode, task_workers: Workers
) -> None:
    await task_workers(1)
    node = await make_node(client_only=True)
    first = await node.submit(progress_errors, None)
    assert await first.result(timeout=10) == ["InvalidArgumentError"]
    second = await node.submit(progress_errors, None)
    assert await second.result(timeout=10) == ["InvalidArgumentError", "RunStoppedError"]
    assert (await first.info()).progress is None  # neither write reached the first job


@pytest.mark.parametrize("bad", [0, -1.0, "5"])
def test_stall_timeout_must_be_positive_seconds(bad: object) -> None:
    with pytest.raises(redpool.InvalidArgumentError):
        redpool.Tasks().task(name="t", stall_timeout=bad)(slow_steps.fn)

"""Thread isolation: a cancel or timeout of a sync task raises at its checkpoints and as an
async exception in its thread, and the job ends only once the code stopped."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import redpool
from tests.helpers import eventually
from tests.tasks.conftest import TaskWorkerProc, read_events
from tests.tasks.sample_tasks import echo, sync_spin, sync_ticks

Workers = Callable[..., Awaitable[TaskWorkerProc]]
MakeNode = Callable[..., Awaitable[redpool.Node]]


def ticks(path: Path) -> int:
    return sum(1 for e in read_events(path) if e[2] == "tick")


@pytest.mark.parametrize("stop_at", ["checkpoint", "progress"])
async def test_cancel_of_a_sync_task_stops_its_loop_before_the_job_is_canceled(
    make_node: MakeNode, task_workers: Workers, task_events: Path, stop_at: str
) -> None:
    await task_workers(1)
    node = await make_node(client_only=True)
    handle = await node.submit(sync_ticks, stop_at)
    await eventually(lambda: ticks(task_events) >= 3, what="ticking")
    assert await handle.cancel(timeout=10) is redpool.Status.CANCELED
    events = [e[2] for e in read_events(task_events)]
    assert events[0] == "start" and events[-1] == "stopped"  # the loop ended before final
    ended_at = ticks(task_events)
    probe = await node.submit(echo, "after")  # runs on the same worker, in the freed slot
    assert await probe.result(timeout=10) == "after"
    assert ticks(task_events) == ended_at  # no tick since: the thread really ended
    with pytest.raises(redpool.JobCanceledError):
        await handle.result()


async def test_a_timeout_stops_a_busy_sync_loop_without_checkpoints(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    await task_workers(1)
    node = await make_node(client_only=True)
    handle = await node.submit(sync_spin, None, timeout=0.5)
    with pytest.raises(redpool.JobTimedOutError) as caught:
        await handle.result(timeout=10)
    assert caught.value.info.status is redpool.Status.TIMED_OUT
    assert [e[2] for e in read_events(task_events)] == ["start", "stopped"]

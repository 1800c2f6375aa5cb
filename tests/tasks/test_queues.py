"""A queue's order and bounds: priorities (higher first, FIFO within one) and max_queued."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import redpool
from tests.helpers import eventually
from tests.tasks.conftest import TaskWorkerProc, read_events
from tests.tasks.sample_tasks import echo, sleep

Workers = Callable[..., Awaitable[TaskWorkerProc]]
MakeNode = Callable[..., Awaitable[redpool.Node]]


def _starts(path: Path) -> list[str]:
    return [e[3] for e in read_events(path) if e[2] == "start"]


async def test_higher_priority_jobs_start_first_and_fifo_within_one_priority(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    await task_workers(1)  # one slot, held by the blocker while the others queue up
    node = await make_node(client_only=True)
    blocker = await node.submit(sleep, {"s": 0.5}, key="blocker")
    await eventually(lambda: _starts(task_events) == ["blocker"], what="the blocker started")
    order = [("low-1", 0), ("mid-1", 5), ("top", 9), ("low-2", 0), ("mid-2", 5), ("low-3", 0)]
    handles = [await node.submit(echo, k, key=k, priority=p) for k, p in order]
    assert {await h.status() for h in handles} == {redpool.Status.QUEUED}
    for handle in handles:
        await handle.wait(timeout=20)
    await blocker.wait(timeout=10)
    assert _starts(task_events) == ["blocker", "top", "mid-1", "mid-2", "low-1", "low-2", "low-3"]

"""Per-key order: if_active="queue" runs every submission of a key in FIFO order, one at a
time; "replace" cancels the active one (its code stops) and runs the new one next."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import redpool
from tests.helpers import eventually
from tests.tasks.conftest import TaskWorkerProc, read_events
from tests.tasks.sample_tasks import boom, echo, sleep

Workers = Callable[..., Awaitable[TaskWorkerProc]]
MakeNode = Callable[..., Awaitable[redpool.Node]]


async def test_queued_submissions_of_a_key_run_one_at_a_time_in_submit_order(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    await task_workers(2)
    await task_workers(2)
    nodes = [await make_node(client_only=True) for _ in range(2)]
    handles = []
    for i in range(6):
        handles.append(await nodes[i % 2].submit(echo, f"m{i}", key="acct:1", if_active="queue"))
    assert len({h.generation for h in handles}) == 6
    results = await asyncio.gather(*(h.result(timeout=20) for h in handles))
    assert results == [f"m{i}" for i in range(6)]  # each handle gets its own generation's
    events = [e for e in read_events(task_events) if e[3] == "acct:1"]
    assert [e[2] for e in events] == ["start", "end"] * 6  # never two at once
    epochs = [int(e[5]) for e in events if e[2] == "start"]
    assert epochs == sorted(epochs)


async def test_a_replaced_generation_keeps_its_outcome_for_a_handle_that_asks_late(
    make_node: MakeNode, task_workers: Workers
) -> None:
    await task_workers()
    node = await make_node()
    before = await node.submit(echo, "before", key="late")
    assert await before.result(timeout=10) == "before"
    # Every handle below asks only once later generations replaced its own.
    handles = [
        await node.submit(echo, "m0", key="late", if_active="queue"),
        await node.submit(boom, None, key="late", if_active="queue"),
        await node.submit(echo, "m2", key="late", if_active="queue"),
    ]
    assert await handles[2].result(timeout=10) == "m2"
    assert await before.result(timeout=1) == "before"  # replaced by a fresh submit
    assert await handles[0].result(timeout=1) == "m0"  # replaced by its FIFO's next
    with pytest.raises(redpool.JobFailedError) as caught:
        await handles[1].result(timeout=1)
    assert caught.value.info.error is not None and caught.value.info.error.message == "boom"
    # The last 20 replaced generations keep theirs: 19 more push out "before" and "m0".
    more = [await node.submit(echo, str(i), key="late", if_active="queue") for i in range(19)]
    assert await more[-1].result(timeout=30) == "18"
    for gone in (before, handles[0]):
        with pytest.raises(redpool.JobNotFoundError):
            await gone.result(timeout=1)
    with pytest.raises(redpool.JobFailedError):
        await handles[1].result(timeout=1)
    assert await handles[2].result(timeout=1) == "m2"


async def test_a_generation_waiting_in_its_keys_queue_is_queued_and_cancels_at_once(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    node = await make_node()
    first = await node.submit(echo, "first", key="k", if_active="queue")
    second = await node.submit(echo, "second", key="k", if_active="queue")
    third = await node.submit(echo, "third", key="k", if_active="queue")
    assert await second.status() is redpool.Status.QUEUED
    assert (await second.info()).generation == second.generation
    assert await second.cancel() is redpool.Status.CANCELED
    await task_workers()
    assert await first.result(timeout=10) == "first"
    assert await third.result(timeout=10) == "third"
    assert len([e for e in read_events(task_events) if e[2] == "start"]) == 2
    assert (await first.info()).status is redpool.Status.SUCCEEDED  # from its history


async def test_replace_cancels_the_running_generation_then_runs_the_new_one(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    await task_workers()
    node = await make_node()
    old = await node.submit(sleep, {"s": 30}, key="sync:7")
    await eventually(lambda: len(read_events(task_events)) == 1, what="started")
    new = await node.submit(echo, "fresh", key="sync:7", if_active="replace")
    assert await new.result(timeout=10) == "fresh"
    with pytest.raises(redpool.JobCanceledError):
        await old.result(timeout=10)
    events = [e[2] for e in read_events(task_events)]
    assert events == ["start", "stopped", "start", "end"]  # the old code stopped first

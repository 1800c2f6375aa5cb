"""Pause and resume (the run keeps its slot and memory), suspend and resume (it gives its slot
back and runs again from its checkpoint state): the handle calls come from the test process,
the runs are in worker processes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from redis.asyncio import Redis

import redpool
from redpool._keys import Keys
from redpool.tasks._keys import TaskKeys
from tests.helpers import eventually
from tests.tasks.conftest import TaskWorkerProc, read_events
from tests.tasks.sample_tasks import (
    AddParams,
    add,
    big_state,
    counter,
    echo,
    sleep,
    steady_counter,
    sync_counter,
    tasks,
)

Workers = Callable[..., Awaitable[TaskWorkerProc]]
MakeNode = Callable[..., Awaitable[redpool.Node]]


def _events(path: Path, key: str) -> list[list[str]]:
    return [e for e in read_events(path) if e[3] == key]


def _ticks(path: Path, key: str) -> list[int]:
    return [int(e[2].split(":")[1]) for e in _events(path, key) if e[2].startswith("tick:")]


def _passed(path: Path, key: str) -> int:
    """How many checkpoints the counter of ``key`` passed."""
    return sum(e[2].startswith("passed:") for e in _events(path, key))


def _begins(path: Path, key: str) -> list[tuple[str, str]]:
    """(pid, 'resumed:n:last progress') of each run of ``key``."""
    return [(e[1], e[2][len("begin:") :]) for e in _events(path, key) if e[2].startswith("begin:")]


async def test_pause_waits_at_a_checkpoint_keeping_its_memory_until_resumed(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    await task_workers()
    client, other = await make_node(client_only=True), await make_node(client_only=True)
    handle = await client.submit(counter, {"to": 40}, key="c")
    await eventually(lambda: len(_ticks(task_events, "c")) >= 3, what="counting")
    assert await handle.pause() is redpool.Status.PAUSED
    assert await other.job("c").status() is redpool.Status.PAUSED  # seen from any node
    paused_at = len(_ticks(task_events, "c"))
    assert await handle.resume() is redpool.Status.RUNNING
    assert await handle.result(timeout=10) == 40
    ticks = _ticks(task_events, "c")
    assert ticks == list(range(1, 41))  # one run, its local counter went on
    assert paused_at <= ticks[-1] and len(_begins(task_events, "c")) == 1


async def test_a_paused_runs_timeout_clock_stops(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    await task_workers()
    client = await make_node(client_only=True)
    handle = await client.submit(counter, {"to": 20}, key="c", timeout=1.0)
    await eventually(lambda: len(_ticks(task_events, "c")) >= 2, what="counting")
    await handle.pause()
    paused = len(_ticks(task_events, "c"))
    await asyncio.sleep(2.0)  # the scenario: paused twice as long as its timeout
    assert await handle.status() is redpool.Status.PAUSED
    assert len(_ticks(task_events, "c")) == paused  # it waited at its checkpoint
    await handle.resume()
    assert await handle.result(timeout=10) == 20


async def test_a_paused_run_is_not_stalled(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    await task_workers()
    client = await make_node(client_only=True)
    handle = await client.submit(steady_counter, {"to": 20}, key="c")
    await eventually(lambda: len(_ticks(task_events, "c")) >= 2, what="counting")
    await handle.pause()
    await asyncio.sleep(1.0)  # the scenario: paused for 3 x its stall timeout
    await handle.resume()
    info = await handle.wait(timeout=10)
    assert (info.status, info.interrupts) == (redpool.Status.SUCCEEDED, 0)
    assert len(_begins(task_events, "c")) == 1


async def test_a_pause_not_acknowledged_in_time_raises_and_the_run_goes_on(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    await task_workers()
    client = await make_node(client_only=True)
    handle = await client.submit(sleep, {"s": 1.5}, key="s")  # never reaches a checkpoint
    await eventually(lambda: len(_events(task_events, "s")) == 1, what="started")
    with pytest.raises(redpool.PauseTimeoutError):
        await handle.pause(ack_timeout=0.3)
    assert await handle.status() is redpool.Status.RUNNING
    assert await handle.result(timeout=10) == "slept"


async def test_pause_of_a_job_that_is_not_running_names_its_true_status(
    make_node: MakeNode, task_workers: Workers
) -> None:
    client = await make_node(client_only=True)
    queued = await client.submit(echo, "x", queue="nobody")
    with pytest.raises(redpool.InvalidTransitionError) as caught:
        await queued.pause()
    assert caught.value.status == "queued"
    await task_workers()
    done = await client.submit(add, AddParams(1, 2))
    await done.wait(timeout=10)
    with pytest.raises(redpool.InvalidTransitionError) as caught:
        await done.pause()
    assert caught.value.status == "succeeded"
    with pytest.raises(redpool.InvalidTransitionError):
        await done.resume()


async def test_cancel_of_a_paused_run_ends_it_canceled(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    await task_workers()
    client = await make_node(client_only=True)
    handle = await client.submit(counter, {"to": 1000}, key="c")
    await eventually(lambda: len(_ticks(task_events, "c")) >= 2, what="counting")
    await handle.pause()
    assert await handle.cancel(timeout=10) is redpool.Status.CANCELED


async def test_suspend_frees_the_slot_and_resume_runs_again_from_the_checkpoint_elsewhere(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    first = await task_workers(1)
    client = await make_node(client_only=True)
    handle = await client.submit(counter, {"to": 30, "save": True}, key="c")
    await eventually(lambda: len(_ticks(task_events, "c")) >= 3, what="counting")
    waiting = await client.submit(echo, "next", key="e")  # the single slot is taken
    assert await waiting.status() is redpool.Status.QUEUED
    assert await handle.suspend(timeout=10) is redpool.Status.SUSPENDED
    assert await waiting.result(timeout=10) == "next"  # it got the freed slot
    saved = _ticks(task_events, "c")[-1]
    assert [e[2] for e in _events(task_events, "c")][-1] == "on_suspend"
    await task_workers(1)
    await first.stop()  # the resumed run can only go to the other process
    assert await handle.resume() in (redpool.Status.QUEUED, redpool.Status.STARTING)
    assert await handle.result(timeout=10) == 30
    begins = _begins(task_events, "c")
    assert begins[0][1] == "0:0:-1"
    assert begins[1][1] == f"1:{saved}:{saved}"  # resumed, its state and last progress kept
    assert begins[1][0] != begins[0][0]  # in another process
    assert _ticks(task_events, "c")[-(30 - saved) :] == list(range(saved + 1, 31))
    assert [r.outcome for r in await handle.runs()] == ["succeeded", "suspended"]


async def test_a_sync_run_pauses_and_suspends_at_its_checkpoints(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    await task_workers(1)
    client = await make_node(client_only=True)
    handle = await client.submit(sync_counter, {"to": 40}, key="t")
    await eventually(lambda: len(_ticks(task_events, "t")) >= 3, what="counting")
    assert await handle.pause() is redpool.Status.PAUSED
    paused = len(_ticks(task_events, "t"))
    await handle.resume()
    await eventually(lambda: len(_ticks(task_events, "t")) > paused + 2, what="counting again")
    assert await handle.suspend(timeout=10) is redpool.Status.SUSPENDED
    saved = _ticks(task_events, "t")[-1]
    await handle.resume()
    assert await handle.result(timeout=10) == 40
    assert [b[1].split(":")[:2] for b in _begins(task_events, "t")] == [
        ["0", "0"],
        ["1", str(saved)],
    ]


async def test_suspend_of_a_task_not_declared_suspendable_is_refused(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    await task_workers()
    client = await make_node(client_only=True)
    handle = await client.submit(sleep, {"s": 30}, key="s")
    await eventually(lambda: len(_events(task_events, "s")) == 1, what="started")
    with pytest.raises(redpool.NotSuspendableError) as caught:
        await handle.suspend()
    assert caught.value.status == "running"
    assert await handle.status() is redpool.Status.RUNNING
    await handle.cancel(timeout=10)


async def test_a_queued_job_is_suspended_at_once_and_runs_when_resumed(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    client = await make_node(client_only=True)
    handle = await client.submit(counter, {"to": 3}, key="c")
    later = await client.submit(counter, {"to": 3}, key="d", delay=30)
    assert await handle.suspend() is redpool.Status.SUSPENDED
    assert await later.suspend() is redpool.Status.SUSPENDED
    await task_workers()
    probe = await client.submit(add, AddParams(1, 1))
    await probe.wait(timeout=10)
    assert await handle.status() is redpool.Status.SUSPENDED
    assert _events(task_events, "c") == []  # never started
    await handle.resume()
    await later.resume()  # due at once
    assert await handle.result(timeout=10) == 3
    assert await later.result(timeout=10) == 3
    assert _begins(task_events, "c")[0][1] == "1:0:-1"


async def test_cancel_wins_over_suspend(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    await task_workers()
    client = await make_node(client_only=True)
    handle = await client.submit(counter, {"to": 1000, "step": 30.0}, key="c")
    await eventually(lambda: _passed(task_events, "c") == 1, what="past its first checkpoint")
    # It reaches its next checkpoint only in 30 s: the suspend waits there...
    assert await handle.suspend(wait=False) is redpool.Status.SUSPENDING
    assert await handle.cancel(timeout=10) is redpool.Status.CANCELED  # ...the cancel not
    assert [r.outcome for r in await handle.runs()] == ["canceled"]
    with pytest.raises(redpool.JobCanceledError):
        await handle.result()
    with pytest.raises(redpool.InvalidTransitionError) as caught:
        await handle.suspend()
    assert caught.value.status == "canceled"


async def test_a_killed_workers_paused_run_is_interrupted_and_runs_again_elsewhere(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    doomed = await task_workers(1)
    client = await make_node(client_only=True)
    handle = await client.submit(counter, {"to": 20}, key="c")
    await eventually(lambda: len(_ticks(task_events, "c")) >= 2, what="counting")
    await handle.pause()
    await task_workers(1)
    doomed.kill()
    await eventually(lambda: len(_begins(task_events, "c")) == 2, what="run again")
    assert await handle.result(timeout=10) == 20
    begins = _begins(task_events, "c")
    assert begins[0][0] != begins[1][0]
    assert [r.outcome for r in await handle.runs()] == ["succeeded", "interrupted"]


async def test_lost_pause_and_resume_messages_only_delay_them(
    make_node: MakeNode, task_workers: Workers, task_events: Path, redis: Redis, pool_name: str
) -> None:
    worker = await task_workers()
    client = await make_node(client_only=True)
    inbox = TaskKeys(Keys(pool_name)).inbox(worker.node_id)
    handle = await client.submit(counter, {"to": 1000}, key="c")
    await eventually(lambda: len(_ticks(task_events, "c")) >= 2, what="counting")
    await redis.delete(inbox)  # the message to the owner is dropped (NOMKSTREAM)
    assert await handle.pause(ack_timeout=5) is redpool.Status.PAUSED  # the upkeep told it
    paused = len(_ticks(task_events, "c"))
    await redis.delete(inbox)
    await handle.resume()  # the paused run looks at its record while it waits
    await eventually(lambda: len(_ticks(task_events, "c")) > paused, what="counting again")
    await handle.cancel(timeout=10)


async def test_a_killed_workers_suspending_run_ends_suspended_and_resumes_elsewhere(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    doomed = await task_workers(1)
    client = await make_node(client_only=True)
    handle = await client.submit(counter, {"to": 1, "step": 30.0, "save": True}, key="c")
    await eventually(lambda: _passed(task_events, "c") == 1, what="past its first checkpoint")
    await task_workers(1)
    assert await handle.suspend(wait=False) is redpool.Status.SUSPENDING  # it sleeps 30 s
    doomed.kill()
    await eventually(lambda: _is(handle, redpool.Status.SUSPENDED), what="suspended")
    await handle.resume()
    assert await handle.result(timeout=10) == 1  # it goes on from its checkpoint state
    begins = _begins(task_events, "c")
    assert begins[1][1] == "1:1:1" and begins[0][0] != begins[1][0]
    assert [r.outcome for r in await handle.runs()] == ["succeeded", "interrupted"]


async def _is(handle: redpool.JobHandle[int], status: redpool.Status) -> bool:
    return await handle.status() is status


async def test_a_checkpoint_state_over_1_mib_is_refused(
    make_node: MakeNode, task_workers: Workers
) -> None:
    await task_workers()
    client = await make_node(client_only=True)
    assert await client.run(big_state, 2 * 1024 * 1024, timeout=10) == "InvalidArgumentError"
    assert await client.run(big_state, 1000, timeout=10) == ""


class _SlowEnd:
    """A hook that takes a while once a run ended: the upkeep repeats the run's cancel
    meanwhile (its record says canceling until the report)."""

    async def on_finally(self, run: redpool.RunContext, outcome: str) -> None:
        await asyncio.sleep(1.5)


async def test_a_repeated_request_does_not_cancel_the_report_of_a_run_that_ended(
    make_node: MakeNode, task_events: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDPOOL_TASK_EVENTS", str(task_events))
    worker = await make_node()
    await worker.add_task_worker(tasks, hooks=[_SlowEnd()])
    client = await make_node(client_only=True)
    handle = await client.submit(sleep, {"s": 30}, key="s")
    await eventually(lambda: len(_events(task_events, "s")) == 1, what="started")
    # Was stuck canceling: the repeated cancel hit the hook, and the report never ran.
    assert await handle.cancel(timeout=10) is redpool.Status.CANCELED

"""Process isolation: every run executes in a child process of its worker, so a timeout or
cancel stops even code that never yields (SIGTERM, then SIGKILL after kill_grace), a crash
of the child fails only its run, and a kill -9 of the worker takes its children with it."""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import redpool
from tests.helpers import eventually
from tests.tasks import sample_tasks
from tests.tasks.conftest import TaskWorkerProc, read_events
from tests.tasks.sample_tasks import (
    AddParams,
    AddResult,
    add,
    async_spin,
    async_whoami,
    boom,
    counter,
    crash,
    echo,
    picky,
    stubborn,
    sync_add,
    sync_counter,
    sync_spin,
    ticker,
    whoami,
)

Workers = Callable[..., Awaitable[TaskWorkerProc]]
MakeNode = Callable[..., Awaitable[redpool.Node]]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an unreaped child would still answer kill)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pids(path: Path, what: str = "start") -> list[int]:
    """The pids that recorded ``what``, in order."""
    return [int(e[1]) for e in read_events(path) if e[2] == what]


async def test_results_errors_and_progress_cross_the_process_boundary(
    make_node: MakeNode, task_workers: Workers, task_events: Path, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    worker = await task_workers(2, isolation="process", log=log)
    node = await make_node(client_only=True)
    assert await node.run(add, AddParams(2, 3), timeout=20) == AddResult(5, worker.node_id + ".t1")
    assert await node.run(sync_add, AddParams(4, 5), timeout=20) == 9
    handle = await node.submit(whoami, None)
    seen = await handle.result(timeout=20)
    assert seen["pid"] != worker.proc.pid and seen["owned"] is True and seen["attempt"] == 1
    progress = (await handle.info()).progress
    assert progress is not None and (progress.completed, progress.details) == (1, "half")
    assert "child says hello" in log.read_text()  # run.log reached the worker's logger
    seen = await node.run(async_whoami, None, timeout=20)
    assert seen["owned"] is True and seen["pid"] != worker.proc.pid
    with pytest.raises(redpool.JobFailedError) as failed:
        await node.run(boom, None, timeout=20)
    error = failed.value.info.error
    assert error is not None and (error.type, error.message) == ("ValueError", "boom")
    assert "raise ValueError" in error.traceback  # the child's traceback
    picky_handle = await node.submit(picky, "ValueError")  # the predicate says: no retry
    with pytest.raises(redpool.JobFailedError):
        await picky_handle.result(timeout=20)
    assert len(await picky_handle.runs()) == 1
    with pytest.raises(redpool.JobSkippedError):
        await node.run(sample_tasks.signal, "skip", timeout=20)


@pytest.mark.parametrize("task", [sync_spin, async_spin], ids=["sync", "async"])
async def test_a_timeout_stops_a_busy_loop_and_its_child_is_gone_before_the_job_ends(
    make_node: MakeNode, task_workers: Workers, task_events: Path, task: redpool.Task[None, None]
) -> None:
    await task_workers(1, isolation="process")
    node = await make_node(client_only=True)
    handle = await node.submit(task, None, timeout=0.5)
    with pytest.raises(redpool.JobTimedOutError) as caught:
        await handle.result(timeout=20)
    assert caught.value.info.status is redpool.Status.TIMED_OUT
    [pid] = pids(task_events)
    assert not alive(pid)  # gone before the job was final
    assert await node.run(echo, "after", timeout=20) == "after"  # the worker keeps serving


async def test_cancel_stops_a_busy_loop_and_its_child_is_gone_before_the_job_ends(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    await task_workers(1, isolation="process")
    node = await make_node(client_only=True)
    handle = await node.submit(sync_spin, None)
    await eventually(lambda: bool(pids(task_events)), what="the run started")
    [pid] = pids(task_events)
    assert alive(pid) and pid != os.getpid()
    assert await handle.cancel(timeout=20) is redpool.Status.CANCELED
    assert not alive(pid)
    assert pids(task_events, "stopped") == [pid]  # SIGTERM raised RunStoppedError in its loop


async def test_a_child_ignoring_sigterm_is_killed_after_kill_grace(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    await task_workers(1, isolation="process", kill_grace=0.5)
    node = await make_node(client_only=True)
    handle = await node.submit(stubborn, None, timeout=0.3)
    with pytest.raises(redpool.JobTimedOutError) as caught:
        await handle.result(timeout=20)
    error = caught.value.info.error
    assert error is not None and "did not stop on SIGTERM" in error.message
    assert "SIGKILL" in error.message and "kill_grace=0.5s" in error.message
    [pid] = pids(task_events)
    assert not alive(pid)


@pytest.mark.parametrize(
    ("how", "message"), [("exit", "exited with code 3"), ("kill", "killed by signal SIGKILL")]
)
async def test_a_child_that_dies_fails_its_run_which_is_retried_and_the_worker_serves_on(
    make_node: MakeNode, task_workers: Workers, task_events: Path, how: str, message: str
) -> None:
    await task_workers(1, isolation="process")
    node = await make_node(client_only=True)
    handle = await node.submit(crash, how)
    with pytest.raises(redpool.JobFailedError) as caught:
        await handle.result(timeout=20)
    error = caught.value.info.error
    assert error is not None and error.type == "TaskProcessError" and message in error.message
    runs = await handle.runs()
    assert [r.outcome for r in runs] == ["failed", "failed"]  # retried: max_attempts=2
    assert len(set(pids(task_events))) == 2  # each attempt in a child of its own
    assert await node.run(echo, "next", timeout=20) == "next"


async def tick_on_a_first_of_two(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> tuple[TaskWorkerProc, redpool.JobHandle[Any], int]:
    """A ticking run on a first worker, a second one to take it over: (first worker, the
    job's handle, its child's pid)."""
    first = await task_workers(1, isolation="process")
    node = await make_node(client_only=True)
    handle = await node.submit(ticker, None, key="long")
    await eventually(lambda: bool(pids(task_events)), what="the run started")
    [pid] = pids(task_events)
    info = await handle.info()
    assert info.worker_id is not None and info.worker_id.startswith(first.node_id)
    await task_workers(1, isolation="process")  # where it may run again
    return first, handle, pid


async def test_kill_9_of_the_worker_ends_its_children_and_the_run_runs_again_elsewhere(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    first, handle, pid = await tick_on_a_first_of_two(make_node, task_workers, task_events)
    first.kill()
    await eventually(lambda: not alive(pid), what="the dead worker's child ended")
    await eventually(lambda: len(pids(task_events)) == 2, timeout=20, what="it ran again")
    assert pids(task_events)[1] != pid
    assert (await handle.info()).interrupts == 1
    assert await handle.cancel(timeout=20) is redpool.Status.CANCELED
    assert not any(alive(p) for p in pids(task_events))


async def test_close_ends_a_workers_children_and_hands_their_runs_on_uncharged(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    closing, handle, pid = await tick_on_a_first_of_two(make_node, task_workers, task_events)
    await closing.stop()  # SIGTERM: the worker process closes its node
    assert not alive(pid)
    await eventually(lambda: len(pids(task_events)) == 2, timeout=20, what="it ran again")
    info = await handle.info()
    assert (info.attempt, info.interrupts) == (1, 0)  # charged neither way
    assert await handle.cancel(timeout=20) is redpool.Status.CANCELED


async def test_a_frozen_workers_child_stops_at_the_lease_deadline_before_the_run_moves(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    frozen, handle, pid = await tick_on_a_first_of_two(make_node, task_workers, task_events)
    frozen.proc.send_signal(signal.SIGSTOP)  # it cannot fence, nor stop its child
    try:
        await eventually(lambda: len(pids(task_events)) == 2, timeout=20, what="it ran again")
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
    events = read_events(task_events)
    moved_at = next(int(e[0]) for e in events if e[2] == "start" and int(e[1]) != pid)
    assert all(int(e[0]) < moved_at for e in events if int(e[1]) == pid)  # one at a time
    assert not alive(pid)
    assert await handle.cancel(timeout=20) is redpool.Status.CANCELED


@pytest.mark.parametrize("task", [sync_counter, counter], ids=["sync", "async"])
async def test_pause_and_suspend_reach_a_run_in_its_child_at_its_checkpoints(
    make_node: MakeNode, task_workers: Workers, task_events: Path, task: redpool.Task[Any, int]
) -> None:
    await task_workers(1, isolation="process")
    node = await make_node(client_only=True)
    handle = await node.submit(task, {"to": 40, "save": True}, key="t")

    def ticks() -> list[int]:
        return [int(e[2][5:]) for e in read_events(task_events) if e[2].startswith("tick:")]

    await eventually(lambda: len(ticks()) >= 3, what="counting")
    assert await handle.pause() is redpool.Status.PAUSED
    paused = len(ticks())
    await handle.resume()
    await eventually(lambda: len(ticks()) > paused + 2, what="counting again")
    assert await handle.suspend(timeout=20) is redpool.Status.SUSPENDED
    saved = ticks()[-1]
    await handle.resume()
    assert await handle.result(timeout=20) == 40
    begins = [(int(e[1]), e[2]) for e in read_events(task_events) if e[2].startswith("begin:")]
    assert [b[1].split(":")[1:3] for b in begins] == [["0", "0"], ["1", str(saved)]]
    assert begins[0][0] != begins[1][0] and not alive(begins[0][0])  # a new child after it


async def test_a_task_a_child_cannot_import_is_refused_at_add_task_worker(
    make_node: MakeNode,
) -> None:
    node = await make_node()
    local = redpool.Tasks()

    @local.task(name="local")
    def inner(run: redpool.SyncRunContext, params: None) -> None:
        pass

    with pytest.raises(redpool.InvalidArgumentError, match=r"'local'.*inside a function"):
        await node.add_task_worker(local, isolation="process")
    in_main = redpool.Tasks()
    namespace: dict[str, object] = {"__name__": "__main__", "tasks": in_main}
    exec("@tasks.task(name='scripted')\ndef scripted(run, params):\n    pass\n", namespace)
    with pytest.raises(redpool.InvalidArgumentError, match=r"'scripted'.*__main__"):
        await node.add_task_worker(in_main, isolation="process")
    with pytest.raises(redpool.InvalidArgumentError, match="kill_grace"):
        await node.add_task_worker(sample_tasks.tasks, isolation="process", kill_grace=0)

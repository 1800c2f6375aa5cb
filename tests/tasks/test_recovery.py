"""A task worker killed mid-run: its run is interrupted and runs again elsewhere within
worker_ttl + 1 s; its late writes are fenced; capacity is never exceeded."""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pytest import MonkeyPatch
from redis.asyncio import Redis

import redpool
from tests.helpers import eventually
from tests.tasks.conftest import TaskWorkerProc, read_events
from tests.tasks.sample_tasks import gated, sleep
from tests.tasks.sample_tasks import tasks as tasks_registry

Workers = Callable[..., Awaitable[TaskWorkerProc]]
MakeNode = Callable[..., Awaitable[redpool.Node]]


def _max_overlap(events: list[list[str]], by: str | None = None) -> int:
    """The most runs under way at once (of one pid, when ``by`` is given)."""
    edges = []
    for ns, pid, what, _key, _attempt, _epoch in events:
        if by is not None and pid != by:
            continue
        if what == "start":
            edges.append((int(ns), 1))
        elif what in ("end", "stopped"):
            edges.append((int(ns), -1))
    now = peak = 0
    for _, step in sorted(edges):
        now += step
        peak = max(peak, now)
    return peak


async def test_a_killed_workers_run_is_interrupted_and_runs_again_elsewhere_within_ttl_plus_1s(
    make_node: MakeNode, task_workers: Workers, task_events: Path, redis: Redis
) -> None:
    doomed = await task_workers(1)
    node = await make_node(client_only=True)
    # The run waits at its gate: still under way at the kill, however long the survivor's
    # start takes on a loaded machine.
    handle = await node.submit(gated, None, key="long")
    await eventually(lambda: bool(read_events(task_events)), what="the first run started")
    await task_workers(1)  # the survivor: free, but the run stays where it started
    doomed.kill()
    killed_at = await _server_now(redis)
    doomed_pid = str(doomed.proc.pid)
    await eventually(
        lambda: any(e[1] != doomed_pid for e in read_events(task_events)),
        what="the run started again in another process",
    )
    starts = [e for e in read_events(task_events) if e[2] == "start"]
    assert all(e[1] == doomed_pid for e in starts[:-1]) and starts[-1][1] != doomed_pid
    assert int(starts[-1][5]) > int(starts[-2][5])  # under a new epoch
    await redis.rpush(f"test:gate:long:{starts[-1][5]}", 1)
    info = await handle.wait(timeout=10)
    assert info.status is redpool.Status.SUCCEEDED
    assert info.attempt == 1  # an interruption is not an attempt
    runs = await handle.runs()
    # One run lost with its worker (a loaded machine may add a fenced one before it).
    assert runs[0].outcome == "succeeded" and info.interrupts == len(runs) - 1
    lost = runs[1]
    assert lost.outcome == "interrupted" and lost.reason == "lost"
    # Interrupted and placed again (one script) within worker_ttl=1 (the worker processes')
    # + 1 s of the kill, on the Redis clock: how fast the survivor's process then gets the
    # CPU to start it is the machine's, not the pool's.
    assert lost.ended_at is not None
    assert lost.ended_at - killed_at < timedelta(seconds=1.0 + 1.0)


async def test_a_worker_never_runs_more_jobs_than_its_concurrency(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    a = await task_workers(2)
    b = await task_workers(1)
    node = await make_node(client_only=True)
    handles = [await node.submit(sleep, {"s": 0.2}) for _ in range(9)]
    for handle in handles:
        assert (await handle.wait(timeout=20)).status is redpool.Status.SUCCEEDED
    events = read_events(task_events)
    pid_a, pid_b = str(a.proc.pid), str(b.proc.pid)
    assert _max_overlap(events, pid_a) <= 2 and _max_overlap(events, pid_b) <= 1
    assert _max_overlap(events) == 3  # the backlog kept every slot busy
    assert {e[1] for e in events} == {pid_a, pid_b}


async def test_a_per_queue_cap_and_a_pool_wide_max_running_hold(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    node = await make_node(client_only=True)
    await node.configure_queue("default", max_running=2)
    await task_workers(3)
    await task_workers(3)
    handles = [await node.submit(sleep, {"s": 0.15}) for _ in range(8)]
    for handle in handles:
        assert (await handle.wait(timeout=20)).status is redpool.Status.SUCCEEDED
    assert _max_overlap(read_events(task_events)) == 2


async def test_a_worker_paused_past_its_lease_stops_its_run_and_its_late_report_is_refused(
    make_node: MakeNode, task_workers: Workers, task_events: Path, redis: Redis
) -> None:
    paused = await task_workers(1)
    node = await make_node(client_only=True)
    handle = await node.submit(gated, None, key="stalled")  # under way until its gate opens
    await eventually(lambda: bool(read_events(task_events)), what="the first run started")
    survivor = await task_workers(1)
    paused.proc.send_signal(signal.SIGSTOP)
    try:
        await eventually(
            lambda: any(e[1] == str(survivor.proc.pid) for e in read_events(task_events)),
            what="the run started on the survivor",
        )
    finally:
        paused.proc.send_signal(signal.SIGCONT)
    await eventually(
        lambda: (
            [e[2] for e in read_events(task_events) if e[1] == str(paused.proc.pid)][-2:]
            == ["start", "stopped"]
        ),
        what="the paused worker stopped its run when it woke (fenced), without finishing it",
    )
    current = next(e for e in read_events(task_events) if e[1] == str(survivor.proc.pid))
    await redis.rpush(f"test:gate:stalled:{current[5]}", 1)
    info = await handle.wait(timeout=10)
    assert info.status is redpool.Status.SUCCEEDED
    runs = await handle.runs()
    assert runs[0].outcome == "succeeded" and runs[1].reason == "lost"
    assert all(run.outcome == "interrupted" for run in runs[1:])  # loaded: maybe fenced too
    assert len({run.epoch for run in runs}) == len(runs)  # the late report was refused
    assert "end" not in [e[2] for e in read_events(task_events) if e[1] == str(paused.proc.pid)]
    # The paused worker joins again (it was reaped) and serves: two runs at once, one each.
    await eventually(
        lambda: _registered(node, paused.node_id), what="the paused worker joined again"
    )
    again = [await node.submit(gated, None, key=f"again{i}") for i in range(2)]
    await eventually(
        lambda: len([e for e in read_events(task_events) if e[3].startswith("again")]) == 2,
        what="both started",
    )
    late = [e for e in read_events(task_events) if e[3].startswith("again")]
    assert {e[1] for e in late} == {str(paused.proc.pid), str(survivor.proc.pid)}
    for e in late:
        await redis.rpush(f"test:gate:{e[3]}:{e[5]}", 1)
    for h in again:
        assert (await h.wait(timeout=10)).status is redpool.Status.SUCCEEDED


async def _registered(node: redpool.Node, node_id: str) -> bool:
    """Whether a task worker of node ``node_id`` is registered in the pool."""
    return any(w.startswith(f"{node_id}.") for w in (await node.jobs.stats()).workers)


async def _server_now(redis: Redis) -> datetime:
    seconds, micros = await redis.time()
    return datetime.fromtimestamp(seconds + micros / 1e6, timezone.utc)


async def test_close_with_drain_lets_runs_finish_and_hands_the_rest_on_without_an_attempt(
    make_node: MakeNode, task_workers: Workers, task_events: Path, monkeypatch: MonkeyPatch
) -> None:
    monkeypatch.setenv("REDPOOL_TASK_EVENTS", str(task_events))  # the worker in this process
    leaving = await make_node()
    await leaving.add_task_worker(tasks_registry, concurrency=2)
    client = await make_node(client_only=True)
    short = await client.submit(sleep, {"s": 0.3}, key="short")
    long = await client.submit(sleep, {"s": 30}, key="long", timeout=60)
    await eventually(lambda: len(read_events(task_events)) == 2, what="both started")
    await task_workers(2)
    await leaving.close(drain=1.0)
    assert (await short.info()).status is redpool.Status.SUCCEEDED  # finished in the drain
    here = str(os.getpid())
    await eventually(
        lambda: any(e[1] != here and e[3] == "long" for e in read_events(task_events)),
        what="the long run started again on the other worker",
    )
    info = await long.info()
    assert info.status is redpool.Status.RUNNING
    assert info.attempt == 1 and info.interrupts == 0  # handed on: neither charged


async def test_cancel_of_a_run_on_a_killed_worker_ends_it_canceled_and_it_never_runs_again(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    doomed = await task_workers(1)
    node = await make_node(client_only=True)
    handle = await node.submit(sleep, {"s": 30}, key="orphan")
    await eventually(lambda: len(read_events(task_events)) == 1, what="started")
    await task_workers(1)  # a live, free worker the run could move to
    doomed.kill()
    await doomed.proc.wait()
    # Nobody runs the code any more: the cancel ends the job once the dead worker's lease
    # expired (worker_ttl=1 s), and the run is not placed again.
    assert await handle.cancel(timeout=1.0 + 2.0) is redpool.Status.CANCELED
    probe = await node.submit(sleep, {"s": 0.01}, key="probe")
    await probe.wait(timeout=10)  # the survivor served the queue meanwhile
    assert [e[3] for e in read_events(task_events) if e[2] == "start"] == ["orphan", "probe"]
    assert [run.outcome for run in await handle.runs()] == ["interrupted"]


async def test_a_job_whose_runs_die_with_their_workers_fails_after_max_interrupts(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    # The submitter's definitions decide (stored at submit); the workers' registry has the
    # default of 3 for "sleep".
    strict = redpool.Tasks(max_interrupts=0)
    lenient = redpool.Tasks()

    @strict.task(name="sleep")
    async def sleep_strict(run: redpool.RunContext, params: dict[str, float]) -> None: ...

    @lenient.task(name="sleep", max_interrupts=5)
    async def sleep_lenient(run: redpool.RunContext, params: dict[str, float]) -> None: ...

    first = await task_workers(2)
    node = await make_node(client_only=True)
    a = await node.submit(sleep_strict, {"s": 30}, key="a")  # the registry's 0
    b = await node.submit(sleep_lenient, {"s": 30}, key="b", max_interrupts=1)  # submit wins
    await eventually(lambda: len(read_events(task_events)) == 2, what="both started")
    first.kill()
    second = await task_workers(2)
    info = await a.wait(timeout=10)
    assert info.status is redpool.Status.FAILED and info.interrupts == 1
    assert info.error is not None and info.error.type == "Interrupted"
    assert (
        info.error.message
        == "the run was interrupted 1 times (max_interrupts 0; the last one: lost)"
    )
    await eventually(lambda: len(read_events(task_events)) == 3, what="b started again")
    second.kill()
    info = await b.wait(timeout=10)
    assert info.status is redpool.Status.FAILED and info.interrupts == 2
    assert info.error is not None
    assert (
        info.error.message
        == "the run was interrupted 2 times (max_interrupts 1; the last one: lost)"
    )
    assert [run.outcome for run in await b.runs()] == ["interrupted", "interrupted"]
    assert [e[3] for e in read_events(task_events)].count("a") == 1  # never ran again

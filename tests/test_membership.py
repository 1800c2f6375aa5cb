"""remove_worker and close() hand jobs to other workers: stop() here first, nothing lost,
nothing run twice (checked across OS processes from what each process recorded)."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from tests.helpers import eventually
from tests.procs import History, read_history, running_now


def assert_no_overlap(history: History) -> None:
    for key, spans in history.intervals.items():
        spans = sorted(spans, key=lambda s: s[1])
        for (pid_a, _, end_a), (pid_b, start_b, _) in itertools.pairwise(spans):
            assert end_a != -1 and end_a <= start_b, f"{key} ran on {pid_a} and {pid_b} at once"


async def _each_runs_once(events: Path, keys: list[str], pids: set[int]) -> bool:
    now = running_now(read_history(events, {}))
    return all(len(now.get(k, [])) == 1 and now[k][0] in pids for k in keys)


async def test_remove_worker_and_close_move_jobs_to_the_other_processes(
    make_node, members, events_file
):
    procs = [await members("--workers", "1") for _ in range(3)]
    client = await make_node(client_only=True)
    keys = [f"job-{i}" for i in range(30)]
    await asyncio.gather(*(client.dispatch_job(k) for k in keys))
    everyone = {p.pid for p in procs}
    await eventually(lambda: _each_runs_once(events_file, keys, everyone), what="all running")

    await procs[0].ask("remove")
    rest = everyone - {procs[0].pid}
    await eventually(lambda: _each_runs_once(events_file, keys, rest), what="moved off 0")

    await procs[1].ask("close")
    last = {procs[2].pid}
    await eventually(lambda: _each_runs_once(events_file, keys, last), what="moved off 1")
    assert sorted(await client.job_keys()) == sorted(keys)
    assert_no_overlap(read_history(events_file, {}))


async def test_a_new_worker_takes_over_only_its_share(make_node, members, events_file):
    first = await members("--workers", "2")
    client = await make_node(client_only=True)
    keys = [f"job-{i}" for i in range(60)]
    await asyncio.gather(*(client.dispatch_job(k) for k in keys))
    await eventually(lambda: _each_runs_once(events_file, keys, {first.pid}), what="running")
    second = await members("--workers", "1")
    await eventually(lambda: _moved_some(events_file, second.pid), what="new worker got its share")
    await eventually(
        lambda: _each_runs_once(events_file, keys, {first.pid, second.pid}), what="settled"
    )
    history = read_history(events_file, {})
    moved = {k for k, spans in history.intervals.items() if len(spans) > 1}
    assert all(len(history.intervals[k]) == 2 for k in moved), "a key moved more than once"
    assert 0 < len(moved) < 40
    assert_no_overlap(history)


async def _moved_some(events: Path, pid: int) -> bool:
    return any(pid in pids for pids in running_now(read_history(events, {})).values())

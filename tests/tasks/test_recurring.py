"""Recurring singleton jobs (issue 10 §5) across worker processes on a real Redis: one run at
a time pool-wide, idempotent upserts from every node, overlap, wake, max_runs, NextRunIn,
a kill -9 of the node that would fire, Boundary's scheduler workflow, and the cron grid
across DST changes."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis.asyncio as aioredis

import redpool
from redpool.tasks._recurring import cron_grid
from tests.tasks.conftest import TaskWorkerProc, spawn_worker
from tests.tasks.recurring_tasks import chooses, flaky, hooked, sleep
from tests.tasks.recurring_tasks import tasks as recurring_tasks

MakeNode = Callable[..., Awaitable[redpool.Node]]
Workers = Callable[..., Awaitable[TaskWorkerProc]]
Event = tuple[str, str, int, int, int, str, int]  # what, key, pid, wall ms, attempt, tag, due


@pytest.fixture
def events_key(pool_name: str) -> str:
    return f"test:{pool_name}:events"


@pytest.fixture
async def workers(redis_url: str, pool_name: str, events_key: str) -> AsyncIterator[Workers]:
    """Start tests/tasks/recurring_proc.py processes; each upserts the schedules given."""
    started: list[TaskWorkerProc] = []

    async def start(*schedules: dict[str, Any], ttl: float = 3.0) -> TaskWorkerProc:
        env = {
            **os.environ,
            "REDPOOL_RECUR_EVENTS": events_key,
            "REDPOOL_RECUR_REDIS": redis_url,
            "REDPOOL_RECUR_TTL": str(ttl),
        }
        worker = await spawn_worker(
            [
                "tests.tasks.recurring_proc",
                redis_url,
                pool_name,
                *[json.dumps(x) for x in schedules],
            ],
            env,
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.returncode is None:
            worker.kill()
            await worker.proc.wait()


async def events(redis: aioredis.Redis, key: str, name: str | None = None) -> list[Event]:
    out: list[Event] = []
    for raw in await redis.lrange(key, 0, -1):
        what, job, pid, ms, attempt, tag, due = raw.decode().split()
        if name is None or job == name:
            out.append((what, job, int(pid), int(ms), int(attempt), tag, int(due)))
    return out


async def until(
    redis: aioredis.Redis, key: str, name: str, what: str, count: int, timeout: float = 20
) -> list[Event]:
    """The events of ``name`` once ``count`` of kind ``what`` happened (fails after timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        found = await events(redis, key, name)
        if sum(1 for e in found if e[0] == what) >= count:
            return found
        assert time.monotonic() < deadline, f"{name}: fewer than {count} {what} events: {found}"
        await asyncio.sleep(0.02)


async def until_occurrences(
    redis: aioredis.Redis, key: str, name: str, count: int, timeout: float = 20
) -> list[Event]:
    """The events of ``name`` once runs of ``count`` occurrences started. Occurrences are
    told apart by their due time (run.scheduled_for): a run interrupted under load (its
    worker fenced) runs again as the same occurrence."""
    deadline = time.monotonic() + timeout
    while True:
        found = await events(redis, key, name)
        if len({e[6] for e in found if e[0] == "start"}) >= count:
            return found
        assert time.monotonic() < deadline, f"{name}: fewer than {count} occurrences: {found}"
        await asyncio.sleep(0.02)


def assert_one_at_a_time(found: list[Event]) -> None:
    """Starts and ends of one key alternate (RPUSH order is causal): never two runs at once."""
    kinds = [e[0] for e in found if e[0] in ("start", "end", "stopped")]
    for i, kind in enumerate(kinds):
        assert kind in (("start",) if i % 2 == 0 else ("end", "stopped")), kinds


async def wait_status(handle: redpool.ScheduleHandle, status: redpool.Status) -> None:
    deadline = time.monotonic() + 20
    while (info := await handle.info()).status != status:
        assert time.monotonic() < deadline, f"still {info.status}"
        await asyncio.sleep(0.02)


async def test_an_interval_job_runs_one_at_a_time_across_three_worker_processes(
    make_node: MakeNode, workers: Workers, redis: aioredis.Redis, events_key: str
) -> None:
    # A run (0.15 s) is longer than the interval (0.1 s): skipped due times never start a
    # second run beside it, on whichever of the three processes.
    spec = {"name": "tick", "task": "recur.sleep", "params": {"s": 0.15}, "every": 0.1}
    for _ in range(3):
        await workers(spec)
    found = await until(redis, events_key, "tick", "end", 12)
    assert_one_at_a_time(found)
    node = await make_node()
    assert [s.name for s in await node.schedules()] == ["tick"]


async def test_interval_due_times_stay_on_the_grid_of_the_redis_clock(
    make_node: MakeNode, workers: Workers, redis: aioredis.Redis, events_key: str
) -> None:
    await workers()
    node = await make_node()
    handle = await node.schedule_job("grid", sleep, {"s": 0.05}, every=0.25)
    info = await handle.info()
    anchor = info.created_at
    seen = set()
    deadline = time.monotonic() + 20
    while len(seen) < 4:
        assert time.monotonic() < deadline, seen
        info = await handle.info()
        if info.next_run_at is not None:
            seen.add(info.next_run_at)
        await asyncio.sleep(0.02)
    for at in seen:  # due times are anchor + k * interval, whatever the runs took
        offset_ms = round((at - anchor).total_seconds() * 1000)
        assert offset_ms % 250 == 0 and offset_ms > 0
    found = await events(redis, events_key, "grid")
    anchor_ms = round(anchor.timestamp() * 1000)
    dues = [e[6] for e in found if e[0] == "end"]  # run.scheduled_for: the grid point
    assert dues == sorted(set(dues)) and all((due - anchor_ms) % 250 == 0 for due in dues)
    assert all(e[3] >= e[6] for e in found if e[0] == "start")  # never early


async def test_upserts_from_two_nodes_make_one_schedule_and_a_changed_spec_takes_over(
    make_node: MakeNode, workers: Workers, redis: aioredis.Redis, events_key: str
) -> None:
    await workers()
    a, b = await make_node(), await make_node()
    first, second = await asyncio.gather(
        a.schedule_job("sync", sleep, {"s": 0, "tag": "old"}, every=3600),
        b.schedule_job("sync", sleep, {"s": 0, "tag": "old"}, every=3600),
    )
    info_a, info_b = await first.info(), await second.info()
    assert info_a.generation == info_b.generation and info_a.next_run_at == info_b.next_run_at
    assert [s.name for s in await a.schedules()] == ["sync"]
    again = await b.schedule_job("sync", sleep, {"s": 0, "tag": "old"}, every=3600)
    assert (await again.info()).next_run_at == info_a.next_run_at  # same spec: grid kept

    await b.schedule_job("sync", sleep, {"s": 0, "tag": "new"}, every=0.2)
    changed = await a.schedule_handle("sync").info()
    assert changed.every == 0.2 and changed.generation == info_a.generation
    found = await until(redis, events_key, "sync", "start", 2)
    assert {e[5] for e in found if e[0] == "start"} == {"new"}  # the new spec, not in an hour
    assert len(await a.schedules()) == 1


async def test_a_wake_during_a_run_is_not_lost_it_runs_once_more_right_after(
    make_node: MakeNode, workers: Workers, redis: aioredis.Redis, events_key: str
) -> None:
    await workers()
    node = await make_node()
    handle = await node.schedule_job("report", sleep, {"s": 0.5}, every=3600)
    await handle.wake()
    await until(redis, events_key, "report", "start", 1)
    await handle.wake()  # during the run: kept, not overwritten by the run's end
    await handle.wake()  # a second one during the same run adds nothing more
    await until(redis, events_key, "report", "end", 2)
    await wait_status(handle, redpool.Status.SCHEDULED)
    info = await handle.info()
    assert info.runs == 2
    assert info.next_run_at is not None
    assert info.next_run_at - info.created_at == timedelta(hours=1)  # the grid is not moved
    found = await events(redis, events_key, "report")
    assert_one_at_a_time(found)
    # Woken occurrences are their own (scheduled_for: when they were made due), not the
    # grid point's, which still runs in an hour as an occurrence of its own.
    dues = [e[6] for e in found if e[0] == "start"]
    grid_ms = round(info.next_run_at.timestamp() * 1000)
    assert len(set(dues)) == 2 and all(due < grid_ms for due in dues), (dues, grid_ms)


async def test_a_wake_only_moves_the_next_run_earlier(make_node: MakeNode) -> None:
    node = await make_node(client_only=True)
    handle = await node.schedule_job("later", sleep, {}, every=3600)
    planned = (await handle.info()).next_run_at
    await handle.wake(within=7200)  # later than planned: no change
    assert (await handle.info()).next_run_at == planned
    await handle.wake(within=600)
    moved = (await handle.info()).next_run_at
    assert moved is not None and planned is not None and moved < planned


async def test_jitter_delays_each_due_time_by_the_same_amount_on_every_node(
    make_node: MakeNode,
) -> None:
    a, b = await make_node(client_only=True), await make_node(client_only=True)
    offsets = set()
    for i in range(20):
        handle = await a.schedule_job(f"j:{i}", sleep, {}, every=3600, jitter=60)
        info = await handle.info()
        assert info.next_run_at is not None
        offset = info.next_run_at - info.created_at - timedelta(hours=1)
        assert timedelta(0) <= offset <= timedelta(seconds=60)
        offsets.add(offset)
        again = await b.schedule_job(f"j:{i}", sleep, {}, every=3600, jitter=60)
        assert (await again.info()).next_run_at == info.next_run_at
    assert len(offsets) > 10  # spread, not one instant for all


async def test_max_runs_ends_the_schedule(make_node: MakeNode, workers: Workers) -> None:
    await workers()
    node = await make_node()
    handle = await node.schedule_job("thrice", sleep, {"s": 0}, every=0.05, max_runs=3)
    info = await handle.job.wait(timeout=20)
    assert info.status == redpool.Status.ENDED
    assert [r.outcome for r in await handle.runs()] == ["succeeded"] * 3
    assert (await handle.metrics()).runs == 3
    with pytest.raises(redpool.InvalidTransitionError):
        await handle.wake()
    # an ended schedule stays ended when a node upserts the same spec at its start
    again = await node.schedule_job("thrice", sleep, {"s": 0}, every=0.05, max_runs=3)
    assert (await again.info()).status == redpool.Status.ENDED


async def test_an_end_at_window_ends_the_schedule(make_node: MakeNode, workers: Workers) -> None:
    await workers()
    node = await make_node()
    end = datetime.now(timezone.utc) + timedelta(seconds=0.5)
    handle = await node.schedule_job("window", sleep, {"s": 0}, every=0.1, end_at=end)
    info = await handle.job.wait(timeout=20)
    assert info.status == redpool.Status.ENDED
    assert 1 <= len(await handle.runs()) <= 5  # due at 0.1, 0.2, ... 0.5 s at most


async def test_due_times_missed_while_no_node_ran_collapse_into_one_run(
    make_node: MakeNode, workers: Workers, redis: aioredis.Redis, events_key: str
) -> None:
    node = await make_node(client_only=True)
    handle = await node.schedule_job("missed", sleep, {"s": 0}, every=0.5)
    anchor_ms = round((await handle.info()).created_at.timestamp() * 1000)
    await node.close()  # the whole pool is down: nobody fires the 5 due times that pass
    await asyncio.sleep(2.6)
    await workers()
    found = await until(redis, events_key, "missed", "end", 3)
    slots = [(e[3] - anchor_ms) // 500 for e in found if e[0] == "start"]
    assert slots[0] >= 5  # the one catch-up run, then one per grid point: no burst
    assert slots == sorted(set(slots))


async def test_a_catchup_window_skips_an_occurrence_later_than_it(
    make_node: MakeNode,
    redis: aioredis.Redis,
    redis_url: str,
    events_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    node = await make_node(client_only=True)
    handle = await node.schedule_job("window", sleep, {"s": 0}, every=3.0, catchup_window=0.2)
    anchor_ms = round((await handle.info()).created_at.timestamp() * 1000)
    await node.close()
    await asyncio.sleep(3.5)  # the due time at 3 s is missed by more than the window
    monkeypatch.setenv("REDPOOL_RECUR_EVENTS", events_key)
    monkeypatch.setenv("REDPOOL_RECUR_REDIS", redis_url)
    back_ms = round(time.time() * 1000)
    worker = await make_node()  # in this process: it fires the late due time at once
    await worker.add_task_worker(recurring_tasks)
    found = await until(redis, events_key, "window", "start", 1)
    next_grid = anchor_ms + ((back_ms - anchor_ms) // 3000 + 1) * 3000
    assert found[0][3] >= next_grid  # not run late: it waited for the next grid point


async def test_kill_9_of_the_node_that_would_fire_loses_no_occurrence_and_runs_none_twice(
    make_node: MakeNode, workers: Workers, redis: aioredis.Redis, events_key: str
) -> None:
    procs = {}
    for _ in range(3):
        proc = await workers(ttl=1.0)
        procs[proc.proc.pid] = proc
    node = await make_node(client_only=True)
    # 2 s: the victim's lease (1 s) has expired when the next one is due, so it is placed
    # on a live worker (a run placed on the dead one would start after the reaping, late).
    handle = await node.schedule_job("beat", sleep, {"s": 0.05}, every=2.0)
    anchor_ms = round((await handle.info()).created_at.timestamp() * 1000)
    await until(redis, events_key, "beat", "end", 2)
    # The process whose run just ended armed the timer of the next occurrence: kill it once
    # that run's end is in Redis. (Killed between its code's end and its report, the run is
    # interrupted and runs again, with the same scheduled_for: at least once.)
    deadline = time.monotonic() + 20
    while (info := await handle.info()).runs < 2 or info.status != redpool.Status.SCHEDULED:
        assert time.monotonic() < deadline, info
        await asyncio.sleep(0.02)
    found = await events(redis, events_key, "beat")
    victim = found[-1][2]
    killed_at = len(found)
    procs[victim].kill()
    await procs[victim].proc.wait()
    found = await until(redis, events_key, "beat", "end", 5)
    # Each occurrence's identity is its due time (run.scheduled_for), not its start (a late
    # start under load falls in the next grid slot): every grid point's code ran to its end
    # once, none is lost. (A run stopped by its worker's fencing under load ran again.)
    ends = [e[6] for e in found if e[0] == "end"]
    assert ends == [anchor_ms + k * 2000 for k in range(1, len(ends) + 1)]
    assert all(e[3] >= e[6] for e in found if e[0] == "start")  # none started before due
    after = [e for e in found[killed_at:] if e[0] == "start"]
    assert after and all(e[2] != victim for e in after)
    assert_one_at_a_time(found)


async def test_boundary_workflow_only_the_failed_job_reruns_and_a_wake_runs_the_other(
    make_node: MakeNode, workers: Workers, redis: aioredis.Redis, events_key: str
) -> None:
    await workers()
    node = await make_node()
    failing = await node.schedule_job("fails", flaky, {"fail": True}, every=3600, run_now=True)
    passing = await node.schedule_job("passes", flaky, {}, every=3600, run_now=True)
    await until(redis, events_key, "fails", "end", 1)  # failed once, rerun by its policy
    await until(redis, events_key, "passes", "end", 1)
    await wait_status(failing, redpool.Status.SCHEDULED)
    await wait_status(passing, redpool.Status.SCHEDULED)
    assert [r.outcome for r in await failing.runs()] == ["succeeded", "failed"]
    assert [r.outcome for r in await passing.runs()] == ["succeeded"]  # it did not rerun

    await passing.wake()
    await until(redis, events_key, "passes", "end", 2)
    await failing.wake()  # a new occurrence: a fresh retry budget, so it fails once again
    await until(redis, events_key, "fails", "end", 2)
    await wait_status(failing, redpool.Status.SCHEDULED)
    assert [r.attempt for r in await failing.runs()] == [2, 1, 2, 1]
    metrics = await failing.metrics()
    assert (metrics.runs, metrics.ok, metrics.failed) == (4, 2, 2)
    assert metrics.next_run_at is not None


async def test_a_task_chooses_its_next_run(
    make_node: MakeNode, workers: Workers, redis: aioredis.Redis, events_key: str
) -> None:
    await workers()
    node = await make_node()
    await node.schedule_job("chooser", chooses, {"n": 0.05}, every=3600, run_now=True)
    await node.schedule_job("hook", hooked, None, every=3600, run_now=True)
    await until(redis, events_key, "chooser", "start", 3)  # NextRunIn, not the hour grid
    await until(redis, events_key, "hook", "start", 3)  # the task's next_run_in


async def test_cancel_other_cancels_the_run_in_flight_and_starts_the_next(
    make_node: MakeNode, workers: Workers, redis: aioredis.Redis, events_key: str
) -> None:
    await workers()
    node = await make_node()
    handle = await node.schedule_job("stuck", sleep, {}, every=0.3, overlap="cancel_other")
    found = await until(redis, events_key, "stuck", "stopped", 2)  # each ran until the next
    assert_one_at_a_time(found)
    assert (await handle.info()).status != redpool.Status.CANCELED
    assert "canceled" in [r.outcome for r in await handle.runs()]
    await handle.cancel()
    assert (await handle.info()).status == redpool.Status.CANCELED


async def test_skip_never_starts_before_a_grid_point_and_buffer_one_runs_at_once(
    make_node: MakeNode, workers: Workers, redis: aioredis.Redis, events_key: str
) -> None:
    await workers()
    node = await make_node()
    # Runs of 1.2 s on a 1 s grid: skip waits for the next grid point after each run,
    # buffer_one runs once right after it (a grid point passed during the run).
    skip = await node.schedule_job("skip", sleep, {"s": 1.2}, every=1.0, run_now=True)
    buffered = await node.schedule_job(
        "buffered", sleep, {"s": 1.2}, every=1.0, run_now=True, overlap="buffer_one"
    )
    skips = await until_occurrences(redis, events_key, "skip", 2)
    buffers = await until_occurrences(redis, events_key, "buffered", 2)
    for handle, found in ((skip, skips), (buffered, buffers)):
        anchor = round((await handle.info()).created_at.timestamp() * 1000)
        end = next(e[3] for e in found if e[0] == "end")
        # The second occurrence's due time (run.scheduled_for), not its start, which load
        # may delay past the next grid point.
        due = list(dict.fromkeys(e[6] for e in found if e[0] == "start"))[1]
        if handle is skip:  # it waited for the next grid point
            assert (due - anchor) % 1000 == 0 and due > end, (due - anchor, end - anchor)
        else:  # it was due at once, before the next grid point
            assert (due - anchor) // 1000 == (end - anchor) // 1000, (due - anchor, end - anchor)


async def test_suspend_keeps_it_from_running_and_resume_goes_on(
    make_node: MakeNode, workers: Workers, redis: aioredis.Redis, events_key: str
) -> None:
    await workers()
    node = await make_node()
    handle = await node.schedule_job("paused", sleep, {"s": 0}, every=0.1)
    await handle.suspend()
    assert (await handle.info()).status == redpool.Status.SUSPENDED
    with pytest.raises(redpool.InvalidTransitionError):
        await handle.wake()
    await handle.resume()
    assert (await handle.info()).status in (redpool.Status.SCHEDULED, redpool.Status.STARTING)
    await until(redis, events_key, "paused", "end", 2)


async def test_a_schedule_name_of_a_plain_task_job_is_refused(make_node: MakeNode) -> None:
    node = await make_node(client_only=True)
    await node.submit(sleep, {}, key="taken", delay=3600)
    with pytest.raises(redpool.JobExistsError):
        await node.schedule_job("taken", sleep, {}, every=1)
    with pytest.raises(redpool.InvalidArgumentError):
        await node.schedule_job("both", sleep, {}, every=1, cron="* * * * *")
    with pytest.raises(redpool.InvalidArgumentError):
        await node.schedule_job("bad", sleep, {}, cron="61 * * * *")


async def test_a_cron_schedule_is_due_at_its_next_cron_time(make_node: MakeNode) -> None:
    node = await make_node(client_only=True)
    handle = await node.schedule_job("cron", sleep, {}, cron="*/5 * * * *", tz="Europe/Berlin")
    info = await handle.info()
    assert info.next_run_at is not None and info.cron == "*/5 * * * *"
    assert info.next_run_at.minute % 5 == 0 and info.next_run_at.second == 0
    assert timedelta(0) < info.next_run_at - info.created_at <= timedelta(minutes=5)


def _utc(*args: int) -> int:
    return round(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


def test_cron_grid_keeps_wall_clock_times_across_dst_changes() -> None:
    # Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST; 2026-10-25 03:00 CEST -> 02:00 CET.
    daily = cron_grid("30 2 * * *", "Europe/Berlin", _utc(2026, 3, 28, 12), 3)
    # 02:30 does not exist on the 29th: it runs at 03:00 CEST (01:00 UTC), as cron does
    assert daily == [_utc(2026, 3, 29, 1), _utc(2026, 3, 30, 0, 30), _utc(2026, 3, 31, 0, 30)]
    autumn = cron_grid("30 2 * * *", "Europe/Berlin", _utc(2026, 10, 24, 12), 2)
    # 02:30 happens twice on the 25th: it runs once (02:30 CEST, 00:30 UTC)
    assert autumn == [_utc(2026, 10, 25, 0, 30), _utc(2026, 10, 26, 1, 30)]
    hourly = cron_grid("0 * * * *", "Europe/Berlin", _utc(2026, 10, 24, 22), 4)
    # every hour of the 25-hour day: 00:00 CEST, 01:00 CEST, 02:00 CEST, 02:00 CET
    assert hourly == [
        _utc(2026, 10, 24, 23), _utc(2026, 10, 25, 0), _utc(2026, 10, 25, 1), _utc(2026, 10, 25, 2)
    ]  # fmt: skip

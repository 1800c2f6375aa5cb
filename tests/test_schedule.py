"""Schedules: plan() runs on one node per interval pool-wide (also at start-up); plans are
applied (starts, stops, stop_all); ScheduleStop ends it everywhere; it survives its planner."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import redis.asyncio as aioredis
import structlog

import redpool
from tests.helpers import eventually
from tests.invariants import episodes, events_of, running_at_end

INTERVAL = 0.3


def plans(events_file, name: str = "s") -> list[tuple[int, int]]:
    return [(ns, pid) for ns, pid, subject in events_of(events_file, "plan") if subject == name]


async def set_plan(redis: aioredis.Redis, spec: object, name: str = "s") -> None:
    await redis.set(f"test-plan:{name}", json.dumps(spec))


async def test_plan_runs_on_one_node_per_interval_including_start_up(members, events_file, redis):
    await set_plan(redis, {"start": ["a"]})
    procs = [await members("--workers", "1") for _ in range(3)]
    await asyncio.gather(*(p.ask(f"schedule s {INTERVAL}") for p in procs))
    await eventually(lambda: len(plans(events_file)) >= 6, 10, "six plans")
    times = [ns for ns, _ in plans(events_file)]
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(times)]
    assert min(gaps) > INTERVAL / 2, f"plan() ran twice in one interval: {gaps}"
    assert running_at_end(episodes(events_file, {})).keys() == {"a"}


async def test_planned_starts_skip_running_keys_and_stops_are_applied(
    make_node, members, events_file, redis
):
    await members("--workers", "2")
    client = await make_node(client_only=True)
    await client.dispatch_job("b")  # already running: the plan must skip it, not wait on it
    await set_plan(redis, {"start": ["a", "b", "c"]})
    planner = await members("--workers", "0")
    await planner.ask(f"schedule s {INTERVAL}")
    await eventually(lambda: _running(events_file) == {"a", "b", "c"}, 5, "a, b, c run")
    await set_plan(redis, {"start": ["a"], "stop_all": True})
    await eventually(lambda: _running(events_file) == {"a", "b"}, 5, "c stopped, b is not ours")
    await set_plan(redis, {"stop": ["a", "never-started"]})
    await eventually(lambda: _running(events_file) == {"b"}, 5, "a stopped")


def _running(events_file) -> set[str]:
    return set(running_at_end(episodes(events_file, {})))


async def test_schedule_stop_ends_the_schedule_on_every_node(members, events_file, redis):
    procs = [await members("--workers", "0") for _ in range(2)]
    await set_plan(redis, {})
    for proc in procs:
        await proc.ask(f"schedule s {INTERVAL}")
    await eventually(lambda: len(plans(events_file)) >= 2, 5, "planning")
    await set_plan(redis, "stop")
    await eventually(lambda: _stopped_planning(events_file), 5, "stopped")
    ended = time.monotonic_ns()
    await asyncio.sleep(3 * INTERVAL)  # the time in which plans would have come
    assert not [ns for ns, _ in plans(events_file) if ns > ended]


def _stopped_planning(events_file) -> bool:
    times = [ns for ns, _ in plans(events_file)]
    return bool(times) and time.monotonic_ns() - times[-1] > 2 * INTERVAL * 1e9


async def test_the_schedule_survives_the_death_of_its_planner(members, events_file, redis):
    await set_plan(redis, {})
    procs = [await members("--workers", "0", "--ttl", "1") for _ in range(3)]
    for proc in procs:
        await proc.ask(f"schedule s {INTERVAL}")
    await eventually(lambda: len(plans(events_file)) >= 3, 5, "planning")
    victim = next(p for p in procs if p.pid == plans(events_file)[-1][1])
    victim.kill()
    killed = time.monotonic_ns()
    await eventually(
        lambda: len([ns for ns, _ in plans(events_file) if ns > killed]) >= 3, 5, "planning on"
    )


async def test_a_plan_in_process_with_a_sync_producer(make_node):
    node = await make_node()
    started: list[str] = []

    class Handler:
        async def start(self, job: redpool.Job) -> None:
            started.append(job.key)

        async def stop(self, key: str) -> None:
            pass

    class Producer:
        name = "sync"

        def plan(self) -> redpool.JobPlan:
            return redpool.JobPlan(start=[redpool.JobParam("x", b"1")])

    await node.add_worker(Handler())
    await node.schedule(Producer(), 60)
    await eventually(lambda: started == ["x"], what="planned at start-up")


async def test_a_schedule_survives_redis_going_away_while_its_plan_is_applied(fresh_redis):
    server = fresh_redis(appendonly=True)
    calls: list[float] = []

    class Producer:
        name = "outage"

        def plan(self) -> redpool.JobPlan:  # sync: runs in a thread
            calls.append(time.monotonic())
            if len(calls) == 1:
                server.stop()  # gone before stop_all reads the schedule's jobs
            return redpool.JobPlan(stop_all=True)

    node = await redpool.add_node("outage", server.url, worker_ttl=1.0, job_sink_block=1.0)
    with structlog.testing.capture_logs() as logs:
        await node.schedule(Producer(), 0.1)
        await eventually(
            lambda: any(e.get("loop") == "schedule:outage" for e in logs), 15, "the error logged"
        )
    server.start()
    await eventually(lambda: len(calls) >= 3, 15, "planning again once Redis is back")
    await node.close()

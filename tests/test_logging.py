"""Logs carry pool/node/worker ids; assigns and reaps are logged with counts and ids;
transient Redis errors never kill a background loop."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.asyncio as aioredis
import structlog

import redpool
from redpool._tasks import supervise
from tests.helpers import Recorder, eventually


async def test_log_entries_carry_pool_node_and_worker_ids(make_node, pool_name):
    with structlog.testing.capture_logs() as logs:
        node = await make_node()
        handler = Recorder()
        handler.fail_with = RuntimeError("nope")
        worker = await node.add_worker(handler)
        with contextlib.suppress(redpool.JobStartError):
            await node.dispatch_job("k")
    joined = next(e for e in logs if e["event"] == "node joined")
    assert (joined["pool"], joined["node"]) == (pool_name, node.id)
    failed = next(e for e in logs if e["event"] == "start failed")
    assert (failed["worker"], failed["key"]) == (worker.id, "k")


async def test_killed_connections_are_logged_retried_and_serving_goes_on(
    make_node, redis: aioredis.Redis
):
    with structlog.testing.capture_logs() as logs:
        node = await make_node(worker_ttl=2.0)
        handler = Recorder()
        await node.add_worker(handler)
        await node.dispatch_job("before")
        me = (await redis.client_info())["id"]
        for _ in range(3):
            for client in await redis.client_list():
                if int(client["id"]) != me:
                    await redis.client_kill_filter(_id=client["id"])
        await eventually(
            lambda: any(e["event"] == "background loop failed; retrying" for e in logs),
            what="a loop noticed",
        )
        await node.dispatch_job("after")
    assert sorted(handler.running) == ["after", "before"]
    assert all(not t.done() for t in node._tasks), "a background loop died"


async def test_the_reaping_node_logs_whom_it_reaped_and_how_many_jobs_it_released(
    make_node, members
):
    with structlog.testing.capture_logs() as logs:
        node = await make_node()
        await node.add_worker(Recorder())
        victim = await members("--workers", "2")
        for i in range(20):
            await node.dispatch_job(f"k{i}")
        theirs = [w for w in await node.pool_workers() if w.node_id == victim.node_id]
        count = sum(w.job_count for w in theirs)
        assert count > 0, "the victim runs none of the jobs; use more keys"
        victim.kill()
        dead = sorted([victim.node_id, *(w.id for w in theirs)])

        def reaps() -> list[dict[str, Any]]:
            return [e for e in logs if e["event"] == "reaped expired leases"]

        await eventually(
            lambda: sorted(r for e in reaps() for r in e["reaped"]) == dead,
            what=f"reap logs naming {dead}",
        )
    assert sum(e["released"] for e in reaps()) == count
    assert all(e["log_level"] == "info" and e["node"] == node.id for e in reaps())


async def test_assigning_queued_jobs_logs_the_count_and_the_workers(make_node):
    with structlog.testing.capture_logs() as logs:
        node = await make_node(ack_grace_period=10.0)
        dispatches = [asyncio.create_task(node.dispatch_job(f"k{i}")) for i in range(3)]
        await eventually(lambda: node.job_keys(), what="admitted")
        worker = await node.add_worker(Recorder())
        await asyncio.gather(*dispatches)
    (assigned,) = [e for e in logs if e["event"] == "assigned jobs"]
    assert (assigned["moved"], assigned["to"], assigned["log_level"]) == (3, [worker.id], "info")


async def test_a_failed_background_task_is_logged_with_what_it_was_doing(make_node):
    node = await make_node()
    worker = await node.add_worker(Recorder())

    async def fails() -> None:
        raise RuntimeError("boom")

    with structlog.testing.capture_logs() as logs:
        node._host.spawn(fails(), "testing a failure")
        worker._spawn(fails(), "testing")
        await eventually(
            lambda: len([e for e in logs if e["event"] == "background task failed"]) == 2
        )
    failed = {e["task"]: e["error"] for e in logs if e["event"] == "background task failed"}
    assert failed == {
        "testing a failure": "RuntimeError('boom')",
        f"testing on worker {worker.id}": "RuntimeError('boom')",
    }


async def test_an_outage_logs_one_warning_per_loop_and_one_line_when_redis_is_back(
    fresh_redis, pool_name
):
    server = fresh_redis(True)
    opts = {"worker_ttl": 1.0, "ack_grace_period": 1.0, "job_sink_block": 1.0}
    with structlog.testing.capture_logs() as logs:
        full = await redpool.add_node(pool_name, server.url, **opts)
        await full.add_worker(Recorder())
        client = await redpool.add_node(pool_name, server.url, client_only=True, **opts)
        server.stop()
        # Both leases ran out: every loop of both nodes retried several times meanwhile.
        await eventually(lambda: full._clock.fenced and client._clock.fenced, what="fenced")
        server.start()

        def events(node: redpool.Node, event: str) -> list[dict[str, Any]]:
            return [e for e in logs if e.get("node") == node.id and e["event"] == event]

        await eventually(
            lambda: all(events(n, "Redis reachable again") for n in (full, client)),
            what="both nodes saw Redis again",
        )
        await full.close()
        await client.close()
    for node in (full, client):
        warned = [e["loop"] for e in events(node, "background loop failed; retrying")]
        assert len(warned) == len(set(warned)), f"a loop warned twice: {warned}"
        assert len(events(node, "Redis reachable again")) == 1
    fencing = "lease not renewed in time; fencing: stopping all jobs here"
    assert events(full, fencing) and not events(client, fencing), "client-only nodes host nothing"


async def test_a_failing_loop_step_is_retried_with_backoff_reported_and_recovers():
    class Reports:
        def __init__(self) -> None:
            self.failures: list[tuple[str, str, float]] = []
            self.recovered: list[str] = []

        def failed(self, loop: str, exc: BaseException, retry_in: float) -> None:
            self.failures.append((loop, str(exc), retry_in))

        def succeeded(self, loop: str) -> None:
            self.recovered.append(loop)

    steps: list[int] = []

    async def step() -> bool:
        steps.append(len(steps))
        if len(steps) in (2, 3, 4):  # the loop ran fine, then fails three times in a row
            raise ConnectionError(f"failure {len(steps)}")
        return len(steps) == 6  # two good steps after the failures, then its work is over

    reports = Reports()
    await asyncio.wait_for(supervise("flaky", step, reports), 10)
    assert len(steps) == 6
    assert [(loop, error) for loop, error, _ in reports.failures] == [
        ("flaky", "failure 2"),
        ("flaky", "failure 3"),
        ("flaky", "failure 4"),
    ]
    waits = [retry_in for _, _, retry_in in reports.failures]
    assert waits[0] > 0 and waits[2] > waits[0], f"no backoff: {waits}"
    assert reports.recovered == ["flaky"]

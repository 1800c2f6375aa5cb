"""Holds (``async with run.hold(key)``): a held key's job is ``locked`` and starts only after
the hold ends, by each path it can end; a wait that would close a cycle is refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from redis.asyncio import Redis

import redpool
from redpool._keys import Keys
from redpool.tasks._keys import TaskKeys
from tests.helpers import eventually
from tests.tasks.conftest import TaskWorkerProc, read_events
from tests.tasks.sample_tasks import echo, grab, grab_holding, grab_within, holder

Workers = Callable[..., Awaitable[TaskWorkerProc]]
MakeNode = Callable[..., Awaitable[redpool.Node]]


def _at(events: list[list[str]], what: str, key: str) -> list[int]:
    return [int(e[0]) for e in events if e[2] == what and e[3] == key]


async def _record(redis: Redis, pool: str, key: str) -> dict[str, Any]:
    raw = await redis.hget(TaskKeys(Keys(pool)).jobs, key)
    return msgpack.unpackb(raw) if raw else {}


@pytest.mark.parametrize("how", ["exit", "succeed", "fail", "cancel", "kill"])
async def test_a_held_job_is_locked_and_starts_only_once_the_hold_ends(
    how: str,
    make_node: MakeNode,
    task_workers: Workers,
    task_events: Path,
    redis: Redis,
) -> None:
    workers = [await task_workers(4)]
    if how == "kill":
        workers.append(await task_workers(4))  # the survivor runs the held job
    node = await make_node(client_only=True)
    held_by = await node.submit(holder, {"target": "victim", "how": how}, key="holder")
    await eventually(lambda: bool(_at(read_events(task_events), "held", "holder")), what="held")
    victim = await node.submit(echo, "ran", key="victim")
    assert await victim.status() is redpool.Status.LOCKED
    listed = await node.jobs.list(status=redpool.Status.LOCKED)
    assert [info.key for info in listed.items] == ["victim"]

    if how == "cancel":
        await held_by.cancel(wait=False)
    elif how == "kill":
        pid = read_events(task_events)[0][1]
        doomed = next(w for w in workers if str(w.proc.pid) == pid)
        released_at = time.monotonic_ns()
        doomed.kill()
    else:
        await redis.rpush("test:gate:holder", 1)
    assert await victim.result(timeout=15) == "ran"

    events = read_events(task_events)
    marks = {"exit": "releasing", "cancel": "stopped", "succeed": "end", "fail": "end"}
    if how != "kill":
        [released_at] = _at(events, marks[how], "holder")
    [started] = _at(events, "start", "victim")  # exactly once
    assert started > released_at
    outcome = {"exit": None, "succeed": "succeeded", "fail": "failed", "cancel": "canceled"}
    if how in ("exit", "kill"):  # the block ended but not the run; the killed one runs again
        assert await held_by.status() is redpool.Status.RUNNING
        await held_by.cancel(timeout=10)
    else:
        assert (await held_by.wait(timeout=10)).status.value == outcome[how]
    assert await redis.hlen(TaskKeys(Keys(node.pool_name)).holds) == 0


async def test_a_hold_locks_a_scheduled_or_queued_job_which_goes_back_when_released(
    make_node: MakeNode, task_workers: Workers, task_events: Path, redis: Redis
) -> None:
    await task_workers(4)
    node = await make_node(client_only=True)
    later = await node.submit(echo, "later", key="later", delay=3600)
    waiting = await node.submit(echo, "waiting", key="waiting", queue="nobody")  # no worker
    assert await waiting.status() is redpool.Status.QUEUED
    first = await node.submit(holder, {"target": "later", "how": "exit"}, key="h1")
    second = await node.submit(holder, {"target": "waiting", "how": "exit"}, key="h2")
    await eventually(lambda: len(_at(read_events(task_events), "held", "h1")) == 1)
    await eventually(lambda: len(_at(read_events(task_events), "held", "h2")) == 1)
    assert await later.status() is redpool.Status.LOCKED
    assert await waiting.status() is redpool.Status.LOCKED
    await redis.rpush("test:gate:h1", 1)
    await redis.rpush("test:gate:h2", 1)
    await eventually(lambda: _later_status(later, redpool.Status.SCHEDULED), what="scheduled")
    await eventually(lambda: _later_status(waiting, redpool.Status.QUEUED), what="queued")
    await first.cancel(timeout=10)
    await second.cancel(timeout=10)


async def test_a_locked_job_suspended_meanwhile_is_suspended_once_the_hold_ends(
    make_node: MakeNode, task_workers: Workers, task_events: Path, redis: Redis
) -> None:
    await task_workers(4)
    node = await make_node(client_only=True)
    held_by = await node.submit(holder, {"target": "victim", "how": "exit"}, key="holder")
    await eventually(lambda: bool(_at(read_events(task_events), "held", "holder")))
    victim = await node.submit(echo, "ran", key="victim")
    assert await victim.suspend() is redpool.Status.LOCKED
    await redis.rpush("test:gate:holder", 1)
    await eventually(lambda: _later_status(victim, redpool.Status.SUSPENDED), what="suspended")
    assert not _at(read_events(task_events), "start", "victim")
    await victim.resume()
    assert await victim.result(timeout=10) == "ran"
    await held_by.cancel(timeout=10)


async def _later_status(handle: redpool.JobHandle[Any], status: redpool.Status) -> bool:
    return await handle.status() is status


async def _waits_for(redis: Redis, pool: str, key: str, target: str) -> bool:
    return (await _record(redis, pool, key)).get("wf") == target


async def test_a_hold_that_would_close_a_cycle_of_two_is_refused(
    make_node: MakeNode, task_workers: Workers, redis: Redis
) -> None:
    await task_workers(4)
    node = await make_node(client_only=True)
    a = await node.submit(grab, "B", key="A")
    b = await node.submit(grab, "A", key="B")
    await eventually(lambda: _running(a, b), what="both run")
    await redis.rpush("test:gate:A", 1)  # A waits for B's run to end
    await eventually(lambda: _waits_for(redis, node.pool_name, "A", "B"), what="A waits")
    await redis.rpush("test:gate:B", 1)  # B would wait for A: refused
    assert await b.result(timeout=10) == ["cycle", "A", "B"]
    assert await a.result(timeout=10) == ["held"]  # B ended: A's wait is over


async def test_a_hold_that_would_close_a_cycle_of_three_is_refused(
    make_node: MakeNode, task_workers: Workers, redis: Redis
) -> None:
    await task_workers(4)
    node = await make_node(client_only=True)
    a = await node.submit(grab, "B", key="A")
    b = await node.submit(grab, "C", key="B")
    c = await node.submit(grab, "A", key="C")
    await eventually(lambda: _running(a, b, c), what="all run")
    await redis.rpush("test:gate:A", 1)
    await eventually(lambda: _waits_for(redis, node.pool_name, "A", "B"), what="A waits")
    await redis.rpush("test:gate:B", 1)
    await eventually(lambda: _waits_for(redis, node.pool_name, "B", "C"), what="B waits")
    await redis.rpush("test:gate:C", 1)
    assert await c.result(timeout=10) == ["cycle", "A", "B", "C"]
    assert await b.result(timeout=10) == ["held"]
    assert await a.result(timeout=10) == ["held"]


async def test_a_cycle_through_a_held_key_is_refused(
    make_node: MakeNode, task_workers: Workers, task_events: Path, redis: Redis
) -> None:
    await task_workers(4)
    node = await make_node(client_only=True)
    a = await node.submit(grab_holding, ["K", "B"], key="A")  # A holds K ...
    await eventually(lambda: bool(_at(read_events(task_events), "held", "A")), what="A holds K")
    b = await node.submit(grab, "K", key="B")
    await eventually(lambda: _running(b), what="B runs")
    await redis.rpush("test:gate:B", 1)  # ... B waits for K, held by A ...
    await eventually(lambda: _waits_for(redis, node.pool_name, "B", "K"), what="B waits")
    await redis.rpush("test:gate:A", 1)  # ... and A would wait for B: refused
    assert await a.result(timeout=10) == ["cycle", "B", "K", "A"]
    assert await b.result(timeout=10) == ["held"]  # A's end released K


async def test_a_hold_that_waits_past_its_timeout_raises_and_holds_nothing(
    make_node: MakeNode, task_workers: Workers, task_events: Path, redis: Redis
) -> None:
    await task_workers(4)
    node = await make_node(client_only=True)
    held_by = await node.submit(holder, {"target": "K", "how": "exit"}, key="A")
    await eventually(lambda: bool(_at(read_events(task_events), "held", "A")), what="A holds K")
    late = await node.submit(grab_within, ["K", 0.3], key="B")
    assert await late.result(timeout=10) == ["timeout"]
    holds = await redis.hgetall(TaskKeys(Keys(node.pool_name)).holds)
    assert [(k, msgpack.unpackb(v)["h"]) for k, v in holds.items()] == [(b"K", "A")]
    await redis.rpush("test:gate:A", 1)  # A leaves its block: K is free to hold
    again = await node.submit(grab_within, ["K", 10], key="C")
    assert await again.result(timeout=10) == ["held"]
    await held_by.cancel(timeout=10)


async def _running(*handles: redpool.JobHandle[Any]) -> bool:
    statuses = await asyncio.gather(*(h.status() for h in handles))
    return all(s is redpool.Status.RUNNING for s in statuses)


async def test_a_run_cannot_hold_its_own_key(
    make_node: MakeNode, task_workers: Workers, redis: Redis
) -> None:
    await task_workers(1)
    node = await make_node(client_only=True)
    handle = await node.submit(grab, "self", key="self")
    await redis.rpush("test:gate:self", 1)
    assert await handle.result(timeout=10) == ["cycle", "self"]

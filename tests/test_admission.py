"""Singleton admission: one job per key, pool-wide; queued jobs wait for workers."""

from __future__ import annotations

import asyncio

import pytest

import redpool
from tests.helpers import Recorder, eventually


async def test_concurrent_dispatch_of_one_key_from_three_processes_admits_exactly_one(members):
    procs = [await members("--workers", "1") for _ in range(3)]
    answers = await asyncio.gather(
        *(p.ask(f"race the-key {n}") for p, n in zip(procs, (7, 7, 6), strict=True))
    )
    ok = sum(int(a.split()[0]) for a in answers)
    exists = sum(int(a.split()[1]) for a in answers)
    assert (ok, exists) == (1, 19)


async def test_a_key_being_started_counts_as_existing(make_node):
    node = await make_node()
    handler = Recorder()
    handler.gate = asyncio.Event()
    await node.add_worker(handler)
    first = asyncio.create_task(node.dispatch_job("k"))
    await eventually(lambda: node.job_keys(), what="job admitted")
    with pytest.raises(redpool.JobExistsError):
        await node.dispatch_job("k")
    handler.gate.set()
    await first
    assert handler.started == ["k"]


async def test_jobs_dispatched_before_any_worker_start_when_the_first_joins(make_node):
    node = await make_node(ack_grace_period=5.0)
    pending = [asyncio.create_task(node.dispatch_job(f"k{i}")) for i in range(50)]
    await eventually(lambda: _count(node, 50), what="all 50 admitted")
    assert not any(t.done() for t in pending)
    handler = Recorder()
    await node.add_worker(handler)
    await asyncio.gather(*pending)
    assert sorted(handler.running) == sorted(f"k{i}" for i in range(50))


async def test_max_queued_jobs_is_enforced_and_nothing_is_trimmed(make_node):
    node = await make_node(max_queued_jobs=3, ack_grace_period=5.0)
    pending = [asyncio.create_task(node.dispatch_job(f"k{i}")) for i in range(3)]
    await eventually(lambda: _count(node, 3), what="3 admitted")
    with pytest.raises(redpool.QueueFullError):
        await node.dispatch_job("one-too-many")
    handler = Recorder()
    await node.add_worker(handler)
    await asyncio.gather(*pending)
    assert sorted(handler.running) == ["k0", "k1", "k2"]
    await node.dispatch_job("now-there-is-room")
    assert "now-there-is-room" in handler.running


async def _count(node: redpool.Node, n: int) -> bool:
    return len(await node.job_keys()) == n

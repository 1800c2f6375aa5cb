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
    with pytest.raises(
        redpool.QueueFullError, match="no live worker with room, and 3 jobs already wait"
    ):
        await node.dispatch_job("one-too-many")
    handler = Recorder()
    await node.add_worker(handler)
    await asyncio.gather(*pending)
    assert sorted(handler.running) == ["k0", "k1", "k2"]
    await node.dispatch_job("now-there-is-room")
    assert "now-there-is-room" in handler.running


async def _count(node: redpool.Node, n: int) -> bool:
    return len(await node.job_keys()) == n


async def test_a_burst_with_idle_workers_is_not_refused_as_a_full_queue(make_node, members):
    # Jobs handed to a live worker are not a backlog, however many are still starting.
    await members("--workers", "1")
    await members("--workers", "1")
    client = await make_node(client_only=True, ack_grace_period=10.0)
    assert client._opts.max_queued_jobs == 1000
    results = await asyncio.gather(
        *(client.dispatch_job(f"burst-{i}") for i in range(1500)), return_exceptions=True
    )
    assert [r for r in results if r is not None] == []
    assert await _count(client, 1500)


async def test_jobs_released_by_a_leaving_worker_do_not_block_new_dispatches(make_node):
    node = await make_node(max_queued_jobs=3, ack_grace_period=5.0)
    worker = await node.add_worker(Recorder())
    for i in range(5):
        await node.dispatch_job(f"k{i}")
    await node.remove_worker(worker)  # its 5 jobs are queued again, and no worker is left
    waiting = asyncio.create_task(node.dispatch_job("new"))
    await eventually(lambda: _count(node, 6), what="the new job admitted")
    handler = Recorder()
    await node.add_worker(handler)
    await waiting
    await eventually(lambda: len(handler.running) == 6, what="all six run")

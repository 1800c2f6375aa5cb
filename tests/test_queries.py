"""job_keys, job_payload, job_info, pool_jobs and pool_workers answer for the whole pool;
client-only nodes."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

import redpool
from redpool._routing import Ring
from tests.helpers import Recorder, eventually


async def test_queries_see_jobs_and_workers_of_other_processes(make_node, members):
    member = await members("--workers", "2")
    client = await make_node(client_only=True)
    await client.dispatch_job("with-payload", b"\x01\x02")
    await client.dispatch_job("empty")
    assert await client.job_keys() == ["empty", "with-payload"]
    assert await client.job_payload("with-payload") == b"\x01\x02"
    assert await client.job_payload("empty") == b""
    assert await client.job_payload("unknown") is None
    infos = await client.pool_workers()
    assert [w.node_id for w in infos] == [member.node_id, member.node_id]
    assert all(w.id.startswith(member.node_id) and w.created_at.tzinfo for w in infos)
    assert await member.ask("keys") == "empty with-payload"


async def test_a_client_only_node_dispatches_stops_and_closes_but_adds_no_worker(
    make_node, members
):
    await members("--workers", "1")
    client = await make_node(client_only=True)
    with pytest.raises(redpool.PoolError, match="client-only"):
        await client.add_worker(object())  # type: ignore[arg-type]
    await client.dispatch_job("k")
    await client.stop_job("k")
    assert await client.job_keys() == []
    await client.close()
    assert client.is_closed()
    with pytest.raises(redpool.PoolClosedError):
        await client.dispatch_job("k")


async def _info(node: redpool.Node, key: str) -> redpool.JobInfo:
    info = await node.job_info(key)
    assert info is not None, f"no job {key!r}"
    return info


async def _state(node: redpool.Node, key: str, state: str) -> bool:
    info = await node.job_info(key)
    return info is not None and info.state == state


async def test_job_info_follows_a_job_from_queued_to_running_on_another_process(make_node, members):
    client = await make_node(client_only=True, ack_grace_period=10.0)
    dispatch = asyncio.create_task(client.dispatch_job("k", b"12345"))
    await eventually(lambda: _state(client, "k", "queued"), what="queued")
    queued = await _info(client, "k")
    assert (queued.worker_id, queued.node_id, queued.host, queued.pid) == (None,) * 4
    assert (queued.attempt, queued.payload_size) == (0, 5)
    assert queued.started_at is None and queued.dispatcher_id == client.id
    member = await members("--workers", "1")
    await dispatch
    running = await _info(client, "k")
    assert running.state == "running"
    assert running.worker_id is not None and running.worker_id.startswith(member.node_id + ".")
    assert (running.node_id, running.host, running.pid) == (
        member.node_id,
        socket.gethostname(),
        member.pid,
    )
    assert running.epoch > queued.epoch and running.created_at == queued.created_at
    assert running.started_at is not None and running.started_at >= running.created_at
    assert await client.job_info("unknown") is None
    with pytest.raises(redpool.InvalidArgumentError):
        await client.job_info("")


async def test_job_info_says_stopping_while_a_slow_stop_runs(make_node, members):
    member = await members("--workers", "1", "--slow-stop", "0.5")
    client = await make_node(client_only=True)
    await client.dispatch_job("k")
    stop = asyncio.create_task(client.stop_job("k"))
    await eventually(lambda: _state(client, "k", "stopping"), what="stopping")
    stopping = await _info(client, "k")
    assert stopping.node_id == member.node_id and stopping.started_at is not None
    await stop
    assert await client.job_info("k") is None


async def test_job_info_while_start_runs_names_the_worker_but_no_start_time(make_node):
    node = await make_node()
    handler = Recorder()
    handler.gate = asyncio.Event()
    worker = await node.add_worker(handler)
    dispatch = asyncio.create_task(node.dispatch_job("k"))
    await eventually(lambda: bool(worker.jobs()), what="start() called")
    info = await _info(node, "k")
    assert info.state in ("assigned", "starting")  # the fast path starts it unclaimed
    assert (info.worker_id, info.pid, info.started_at) == (worker.id, os.getpid(), None)
    handler.gate.set()
    await dispatch
    assert (await _info(node, "k")).state == "running"


async def test_job_info_after_a_move_names_the_new_worker_and_epoch(make_node, members):
    one = await members("--workers", "1")
    two = await members("--workers", "1")
    client = await make_node(client_only=True)
    await client.dispatch_job("k")
    before = await _info(client, "k")
    owner, other = (one, two) if before.node_id == one.node_id else (two, one)
    await owner.ask("remove")

    async def moved() -> bool:
        info = await client.job_info("k")
        return info is not None and info.state == "running" and info.node_id == other.node_id

    await eventually(moved, what="job moved")
    after = await _info(client, "k")
    assert after.pid == other.pid and after.worker_id != before.worker_id
    assert after.epoch > before.epoch and after.attempt == 0
    assert after.started_at is not None and before.started_at is not None
    assert after.started_at >= before.started_at


async def test_pool_workers_and_pool_jobs_say_who_runs_what(make_node, members):
    one = await members("--workers", "2")
    two = await members("--workers", "1")
    client = await make_node(client_only=True)
    keys = [f"k{i}" for i in range(30)]
    await asyncio.gather(*(client.dispatch_job(k) for k in keys))
    workers = await client.pool_workers()
    assert sorted(w.node_id for w in workers) == sorted([one.node_id] * 2 + [two.node_id])
    pids = {one.node_id: one.pid, two.node_id: two.pid}
    assert all(w.pid == pids[w.node_id] and w.host == socket.gethostname() for w in workers)
    assert sum(w.job_count for w in workers) == len(keys)
    seen: list[str] = []
    for w in workers:
        jobs = await client.pool_jobs(worker=w.id)
        assert len(jobs) == w.job_count
        assert all(j.worker_id == w.id and j.state == "running" for j in jobs)
        seen += [j.key for j in jobs]
    assert sorted(seen) == sorted(keys)
    everything = await client.pool_jobs()
    assert [j.key for j in everything] == sorted(keys)
    assert await client.pool_jobs(worker="no-such-worker") == []


async def test_pool_jobs_pages_through_more_jobs_than_one_script_call_reads(make_node):
    node = await make_node()
    worker = await node.add_worker(Recorder())
    keys = [f"job-{i:04d}" for i in range(1200)]
    for i in range(0, len(keys), 200):
        await asyncio.gather(*(node.dispatch_job(k) for k in keys[i : i + 200]))
    assert [j.key for j in await node.pool_jobs(worker=worker.id)] == keys
    assert [j.key for j in await node.pool_jobs()] == keys
    (info,) = await node.pool_workers()
    assert info.job_count == len(keys)


async def test_started_at_of_an_earlier_assignment_does_not_count_after_a_move(make_node):
    node = await make_node()
    first = await node.add_worker(Recorder())
    slow = Recorder()
    slow.gate = asyncio.Event()
    second = await node.add_worker(slow)
    ring = Ring("", {w.id: 0 for w in await node.pool_workers()})
    key = next(k for k in (f"k{i}" for i in range(100)) if ring.route(k) == first.id)
    await node.dispatch_job(key)
    ran = await _info(node, key)
    assert ran.started_at is not None
    await node.remove_worker(first)  # the job moves to `second`, whose start() waits
    try:
        await eventually(lambda: bool(second.jobs()), what="start() called on the new owner")
        moved = await _info(node, key)
    finally:
        slow.gate.set()
    assert (moved.worker_id, moved.started_at) == (second.id, None)
    assert moved.state in ("assigned", "starting") and moved.epoch > ran.epoch
    await eventually(lambda: _state(node, key, "running"), what="running on the new owner")

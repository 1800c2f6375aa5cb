"""Handlers that misbehave across processes: a start() that never returns fails its dispatch
and frees its key, and a node leaves in bounded time whatever its handlers do; a handler that
blocks the event loop past the lease gets its node fenced (and logged), and no key runs twice
at once meanwhile."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import redpool
from tests.helpers import eventually
from tests.invariants import check_no_overlap, episodes, events_of, runs_exactly_once
from tests.procs import Member

TTL = 1.0


async def test_a_start_that_never_returns_fails_its_dispatch_and_wedges_nothing(
    make_node, members, events_file
):
    worker = await members("--ttl", str(TTL), "--start-timeout", "2", "--shutdown-ttl", "1")
    client = await make_node(client_only=True, worker_ttl=TTL, ack_grace_period=3.0)
    with pytest.raises(redpool.JobStartError, match=r"start\(\) did not return within 2s"):
        await client.dispatch_job("k", b"hang")
    await client.dispatch_job("k")  # the key is free again
    await client.stop_job("k")
    await client.dispatch_job("k")
    # Leaving never waits longer than worker_shutdown_ttl for a start that hangs: not
    # remove_worker(), not close(), not shutdown().
    await _leave_during_a_hanging_start(client, worker, "remove", events_file)
    await worker.ask("add")
    await _leave_during_a_hanging_start(client, worker, "close", events_file)
    other = await members("--ttl", str(TTL), "--start-timeout", "30", "--shutdown-ttl", "1")
    await _leave_during_a_hanging_start(client, other, "shutdown", events_file)
    assert _stderr(events_file).count("abandoning their jobs") == 3


async def _leave_during_a_hanging_start(
    client: redpool.Node, member: Member, command: str, events_file: Path
) -> None:
    key = f"h-{command}"
    hanging = asyncio.create_task(client.dispatch_job(key, b"hang"))
    await eventually(lambda: _starts(events_file, key) == 1, 5, f"{key} hangs")
    await member.ask(command, timeout=15)
    if command != "shutdown":  # the job was released, and waits for a worker: end it
        await client.stop_job(key)
    with pytest.raises(redpool.PoolError):
        await hanging


def _starts(events_file: Path, key: str) -> int:
    return sum(k == key for _, _, k in events_of(events_file, "start"))


def _stderr(events_file: Path) -> str:
    return events_file.with_suffix(".stderr").read_text()


async def test_a_handler_blocking_the_event_loop_gets_its_node_fenced(
    make_node, members, events_file, tmp_path: Path
):
    procs = [await members("--workers", "2", "--ttl", str(TTL)) for _ in range(3)]
    client = await make_node(client_only=True, worker_ttl=TTL, ack_grace_period=5.0)
    keys = [f"job-{i}" for i in range(30)]
    await asyncio.gather(*(client.dispatch_job(k) for k in keys))
    await eventually(lambda: runs_exactly_once(events_file, keys, {}), 10, "settled")
    # Its first owner's start() sleeps 2.5 TTLs on the event loop; later owners start it.
    marker = tmp_path / "blocked"
    blocked_at = time.monotonic_ns()
    payload = f"block:{2.5 * TTL}:{marker}".encode()
    poison = asyncio.create_task(client.dispatch_job("poison", payload))
    await eventually(marker.exists, 5, "the poison start blocks a node")
    everything = [*keys, "poison"]
    await poison
    await eventually(lambda: runs_exactly_once(events_file, everything, {}), 15, "settled again")
    check_no_overlap(episodes(events_file, {}), strict=False)
    stderr = _stderr(events_file)
    assert "event loop blocked" in stderr and "in start" in stderr
    assert "event loop was blocked for" in stderr and "fencing" in stderr
    moved = [e for e in episodes(events_file, {}) if e.start > blocked_at and e.key != "poison"]
    assert moved, "the blocked node's jobs were not moved"
    assert all(p.proc.returncode is None for p in procs)

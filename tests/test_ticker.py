"""Distributed tickers: one tick per interval pool-wide, to one consuming node, no drift."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
import structlog

import redpool
from tests.helpers import eventually
from tests.invariants import events_of

INTERVAL = 0.2


def ticks(events_file, name: str) -> list[tuple[int, int, int]]:
    """(ns, pid, due ms) of each tick of ``name`` any process took."""
    out = []
    for ns, pid, subject in events_of(events_file, "ticked"):
        ticker, due = subject.rsplit("@", 1)
        if ticker == name:
            out.append((ns, pid, int(due)))
    return out


async def test_each_interval_ticks_once_on_one_consuming_node(members, events_file):
    consumers = [await members("--workers", "0") for _ in range(3)]
    idle = await members("--workers", "0")
    await idle.ask(f"idle-ticker t {INTERVAL}")
    for member in consumers:
        await member.ask(f"ticker t {INTERVAL}")
    await eventually(lambda: len(ticks(events_file, "t")) >= 15, 10, "15 ticks")
    got = ticks(events_file, "t")
    dues = [due for _, _, due in got]
    assert len(dues) == len(set(dues)), "a tick was delivered twice"
    steps = {b - a for a, b in itertools.pairwise(dues)}
    assert steps == {int(INTERVAL * 1000)}, f"ticks skipped or drifted: {sorted(steps)}"
    assert idle.pid not in {pid for _, pid, _ in got}, "a node that does not iterate ticked"
    assert len({pid for _, pid, _ in got}) >= 2, "ticks should go to several consumers"


async def test_ticks_go_on_when_the_node_that_took_the_last_one_dies(members, events_file):
    consumers = [await members("--workers", "0", "--ttl", "1") for _ in range(3)]
    for member in consumers:
        await member.ask(f"ticker k {INTERVAL}")
    await eventually(lambda: len(ticks(events_file, "k")) >= 5, 10, "ticking")
    last_pid = ticks(events_file, "k")[-1][1]
    victim = next(m for m in consumers if m.pid == last_pid)
    victim.kill()
    killed = time.monotonic_ns()
    await eventually(
        lambda: any(ns > killed for ns, _, _ in ticks(events_file, "k")), 3, "ticks after kill"
    )
    after = [ns for ns, _, _ in ticks(events_file, "k") if ns > killed]
    assert (after[0] - killed) / 1e9 < INTERVAL + 1.0


async def test_the_newer_ticker_of_a_name_wins(members, events_file):
    first, second = await members("--workers", "0"), await members("--workers", "0")
    await first.ask("ticker n 0.1")
    await eventually(lambda: len(ticks(events_file, "n")) >= 3, 5, "fast ticks")
    await second.ask("ticker n 0.3")
    changed = time.monotonic_ns()
    await eventually(
        lambda: len([t for t in ticks(events_file, "n") if t[0] > changed]) >= 4, 5, "slow"
    )
    dues = [due for ns, _, due in ticks(events_file, "n") if ns > changed]
    assert {b - a for a, b in itertools.pairwise(dues)} == {300}


async def test_stop_ends_the_ticker_on_every_node(members, events_file, make_node):
    a, b = await members("--workers", "0"), await members("--workers", "0")
    for member in (a, b):
        await member.ask(f"ticker s {INTERVAL}")
    await eventually(lambda: len(ticks(events_file, "s")) >= 3, 5, "ticking")
    await a.ask("stop-ticker s")
    stopped = time.monotonic_ns()
    await asyncio.sleep(3 * INTERVAL)  # the time in which ticks would have come
    assert not [t for t in ticks(events_file, "s") if t[0] > stopped + INTERVAL * 1e9]


async def test_tickers_and_schedules_need_a_full_node(make_node):
    client = await make_node(client_only=True)
    with pytest.raises(redpool.PoolError, match="full node"):
        await client.new_ticker("t", 1.0)
    with pytest.raises(redpool.PoolError, match="full node"):
        await client.schedule(object(), 1.0)  # type: ignore[arg-type]


async def test_a_ticker_in_process_yields_due_times(make_node):
    node = await make_node()
    ticker = await node.new_ticker("local", 0.05)
    got = []
    async for tick in ticker:
        got.append(tick)
        if len(got) == 3:
            ticker.close()
    assert [round((b - a).total_seconds(), 3) for a, b in itertools.pairwise(got)] == [
        0.05,
        0.05,
    ]


async def test_an_outage_is_logged_once_by_a_ticker_and_its_end_too(fresh_redis, pool_name):
    server = fresh_redis(True)
    node = await redpool.add_node(
        pool_name, server.url, worker_ttl=1.0, ack_grace_period=1.0, job_sink_block=1.0
    )
    ticker = await node.new_ticker("t", 0.05)
    ticks: list[object] = []

    async def consume() -> None:
        async for tick in ticker:
            ticks.append(tick)

    with structlog.testing.capture_logs() as logs:
        consuming = asyncio.ensure_future(consume())
        await eventually(lambda: len(ticks) >= 2, what="ticking")
        server.stop()
        # The node fences after 0.75 s: the ticker retried several times meanwhile.
        await eventually(lambda: node._clock.fenced, what="fenced")
        server.start()
        seen = len(ticks)
        await eventually(lambda: len(ticks) > seen + 2, what="ticking again")
        ticker.close()
        await consuming
        await node.close()
    mine = [e for e in logs if e.get("ticker") == "t"]
    assert [e["event"] for e in mine].count("background loop failed; retrying") == 1, mine
    assert [e["event"] for e in mine].count("Redis reachable again") == 1, mine

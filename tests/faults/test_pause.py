"""Fencing: a worker process paused (SIGSTOP) past its lease stops its own jobs; at no instant
do two processes work on the same key."""

from __future__ import annotations

import asyncio
import signal
import time

from tests.helpers import eventually
from tests.invariants import (
    check_no_overlap,
    episodes,
    keys_on,
    recovery_seconds,
    runs_exactly_once,
    summary,
)

TTL = 1.0


async def test_sigstop_for_three_ttls_then_sigcont(make_node, members, events_file, report):
    procs = [await members("--workers", "2", "--ttl", str(TTL)) for _ in range(3)]
    client = await make_node(client_only=True, worker_ttl=TTL)
    keys = [f"job-{i}" for i in range(60)]
    await asyncio.gather(*(client.dispatch_job(k) for k in keys))
    await eventually(lambda: runs_exactly_once(events_file, keys, {}), 10, "settled")

    paused = procs[0]
    frozen = keys_on(episodes(events_file, {}), paused.pid)
    paused.signal(signal.SIGSTOP)
    stopped_at = time.monotonic_ns()
    others = {p.pid for p in procs[1:]}

    def moved() -> bool:
        eps = episodes(events_file, {})
        return all(any(e.pid in others and e.start > stopped_at for e in eps if e.key == k)
                   for k in frozen)  # fmt: skip

    await eventually(moved, 3 * TTL, "the paused worker's jobs run elsewhere")
    recovered = recovery_seconds(episodes(events_file, {}), stopped_at, frozen)
    await asyncio.sleep(3 * TTL - (time.monotonic_ns() - stopped_at) / 1e9)  # the pause itself
    paused.signal(signal.SIGCONT)
    # It fences (stops its jobs), learns it was declared dead, rejoins, takes its share back.
    await eventually(lambda: runs_exactly_once(events_file, keys, {}), 15, "settled again")
    await eventually(lambda: bool(keys_on(episodes(events_file, {}), paused.pid)), 10, "rejoined")
    check_no_overlap(episodes(events_file, {}), strict=False)
    report(summary(f"SIGSTOP, worker_ttl={TTL}s (from the pause)", recovered))

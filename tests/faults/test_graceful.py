"""A graceful SIGTERM closes the node: its jobs move at once, with no lease to wait out."""

from __future__ import annotations

import asyncio
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

TTL = 10.0  # the default: waiting for the lease would take this long


async def test_sigterm_moves_the_jobs_at_once(make_node, members, events_file, report):
    leaving = await members("--workers", "2", "--ttl", str(TTL))
    staying = await members("--workers", "2", "--ttl", str(TTL))
    client = await make_node(client_only=True, worker_ttl=TTL)
    keys = [f"job-{i}" for i in range(60)]
    await asyncio.gather(*(client.dispatch_job(k) for k in keys))
    await eventually(lambda: runs_exactly_once(events_file, keys, {}), 10, "settled")
    moving = keys_on(episodes(events_file, {}), leaving.pid)
    sent = time.monotonic_ns()
    await leaving.terminate()
    await eventually(lambda: runs_exactly_once(events_file, keys, {}), TTL / 2, "moved")
    assert keys_on(episodes(events_file, {}), staying.pid) == set(keys)
    check_no_overlap(episodes(events_file, {}))
    report(summary("graceful SIGTERM (from the signal)", recovery_seconds(
        episodes(events_file, {}), sent, moving)))  # fmt: skip

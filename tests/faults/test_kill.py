"""kill -9 of a worker process under load: its jobs run again elsewhere within the lease."""

from __future__ import annotations

import asyncio
import random

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


async def test_kill_9_one_of_three_worker_processes_five_times(
    make_node, members, events_file, report
):
    procs = [await members("--workers", "2", "--ttl", str(TTL)) for _ in range(3)]
    client = await make_node(client_only=True, worker_ttl=TTL)
    keys = [f"job-{i}" for i in range(90)]
    await asyncio.gather(*(client.dispatch_job(k) for k in keys))
    killed: dict[int, int] = {}
    recoveries: list[float] = []
    rng = random.Random(7)
    churn = asyncio.create_task(_dispatch_and_stop(client, "churn"))
    try:
        for cycle in range(5):
            await eventually(
                lambda: runs_exactly_once(events_file, keys, killed), 15, f"settled {cycle}"
            )
            victim = procs.pop(rng.randrange(len(procs)))
            lost = keys_on(episodes(events_file, killed), victim.pid) & set(keys)
            victim.kill()
            assert victim.killed_at is not None
            killed[victim.pid] = victim.killed_at
            await eventually(
                lambda: runs_exactly_once(events_file, keys, killed), 15, f"recovered {cycle}"
            )
            recoveries += recovery_seconds(episodes(events_file, killed), victim.killed_at, lost)
            procs.append(await members("--workers", "2", "--ttl", str(TTL)))
    finally:
        churn.cancel()
    check_no_overlap(episodes(events_file, killed))
    report(summary(f"kill -9, 5 cycles, worker_ttl={TTL}s (from the kill)", recoveries))
    # A dead worker's jobs are due one lease after its last renewal (at most one TTL before
    # the kill): every admitted job runs again within 2 x worker_ttl.
    assert max(recoveries) < 2 * TTL + 1.0, recoveries


async def _dispatch_and_stop(client, prefix: str) -> None:
    """Load: keep dispatching and stopping other jobs while workers die."""
    n = 0
    while True:
        key = f"{prefix}-{n % 10}"
        n += 1
        try:
            await client.dispatch_job(key)
            await client.stop_job(key)
        except Exception:  # a dying worker may fail one; the load goes on
            await asyncio.sleep(0.01)

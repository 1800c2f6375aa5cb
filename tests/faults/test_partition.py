"""A partition: a worker process cut off from Redis by a blackholing TCP proxy fences its jobs
before its lease expires, also those whose start() finished during the partition (a start
report is not retried past the fence time while it holds the key) and those whose start() is
still running (cancelled at the fence time), so no key runs on two processes at once."""

from __future__ import annotations

import asyncio
import time

from tests.helpers import eventually
from tests.invariants import check_no_overlap, episodes, events_of, runs_exactly_once

TTL = 2.0


async def test_a_blackholed_worker_stops_its_jobs_before_others_start_them(
    make_node, members, events_file, proxy
):
    direct = [await members("--workers", "2", "--ttl", str(TTL), "--grace", "5") for _ in range(2)]
    cut_off = await members("--workers", "2", "--ttl", str(TTL), "--grace", "5", url=proxy.url)
    client = await make_node(client_only=True, worker_ttl=TTL, ack_grace_period=10.0)
    keys = [f"job-{i}" for i in range(60)]
    # Each start() takes a while, so the partition comes while some run on the cut-off node:
    # half finish during it, and their reports cannot get through; the other half would still
    # run at the fence time, and are cancelled then.
    dispatches = [
        asyncio.create_task(client.dispatch_job(k, b"slow:0.5" if i % 2 else b"slow:3"))
        for i, k in enumerate(keys)
    ]

    def started_on_cut_off() -> bool:
        return any(pid == cut_off.pid for _, pid, _ in events_of(events_file, "start"))

    await eventually(started_on_cut_off, 10, "starts under way on the node to be cut off")
    proxy.blackhole(True)
    cut_at = time.monotonic_ns()
    await asyncio.gather(*dispatches)
    await eventually(lambda: runs_exactly_once(events_file, keys, {}), 20, "settled elsewhere")
    eps = episodes(events_file, {})
    assert any(e.pid == cut_off.pid and e.start < cut_at for e in eps), "nothing was cut off"
    check_no_overlap(eps, strict=True)
    assert {e.pid for e in eps if e.end == -1} <= {p.pid for p in direct}

"""Scenario 4: rebalancing. N running jobs over 8 workers (4 processes x 2 workers); add a ninth
worker, then remove one of the original eight. For each change: the fraction of keys that moved
(ideal 1/9) and the time from the change until the last start/stop it caused (settled: every
job runs exactly once, and no member event for a quiet period)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redpool

from .common import (
    Context,
    EventReader,
    Members,
    Ownership,
    Result,
    Row,
    client_node,
    dispatch_many,
    error_summary,
    shutdown_pool,
)

NAME = "rebalance"
IDEAL = 1 / 9


async def run(ctx: Context) -> Result:
    result = Result(NAME)
    n = ctx.sizes.rebalance_jobs
    pool = f"rebalance-{uuid.uuid4().hex[:6]}"
    path = ctx.workdir / f"{pool}.events"
    reader, owners = EventReader(path), Ownership()
    async with Members(ctx, pool) as members, client_node(ctx, pool) as node:
        procs = await members.spawn(4, workers=2, events=path)
        t0 = time.perf_counter()
        errors = await dispatch_many(node, [f"job-{i:05d}" for i in range(n)], 200)
        result.data["dispatch_s"] = time.perf_counter() - t0
        if errors:
            result.problems.append(f"rebalance: dispatch_job {error_summary(errors)}")
        await asyncio.sleep(1.0)
        owners.apply(reader.read())
        result.data["before"] = dict(sorted(owners.by_worker().items()))
        if len(owners.owner) != n:
            result.problems.append(f"rebalance: {len(owners.owner)} of {n} jobs running")

        added = await _change(ctx, node, reader, owners, lambda: procs[0].call("add"))
        added["new_worker_jobs"] = owners.by_worker().get("p0.2", 0)
        removed_share = sum(1 for w in owners.owner.values() if w == "p1.1")
        removed = await _change(ctx, node, reader, owners, lambda: procs[1].call("remove"))
        removed["removed_worker_jobs"] = removed_share
        result.data |= {"add": added, "remove": removed}
        result.data["shutdown_s"] = await shutdown_pool(node, result, timeout=90)
        result.problems += members.warnings()

    for what, data in (("add", added), ("remove", removed)):
        label = "add a 9th worker" if what == "add" else "remove 1 of 9 workers"
        if data["overlaps"]:
            result.problems.append(f"rebalance {what}: jobs ran twice: {data['overlap_example']}")
        if data["settled_s"] is None:
            result.problems.append(
                f"rebalance {what}: not settled within {data['waited_s']:.0f} s "
                f"({data['running']} of {n} running)"
            )
        frac = data["moved"] / n
        note = f"{n:,} jobs, ideal {IDEAL:.3f}; {frac / IDEAL:.2f}x ideal"
        result.rows.append(
            Row(NAME, f"{what}_moved", f"{label}: fraction moved", frac, "", None, note)
        )
        settled = data["settled_s"]
        if settled is None:
            result.rows.append(
                Row(NAME, f"{what}_settled", f"{label}: settled", None, "s", None, "not settled")
            )
        else:
            touched = f"{data['touched']:,} keys stopped/started"
            result.rows.append(
                ctx.timing(
                    NAME, f"{what}_settled", f"{label}: settled", settled * 1000, touched, "s"
                )
            )
    return result


async def _change(
    ctx: Context,
    node: redpool.Node,
    reader: EventReader,
    owners: Ownership,
    action: Callable[[], Awaitable[str]],
) -> dict[str, Any]:
    n, quiet = ctx.sizes.rebalance_jobs, ctx.sizes.rebalance_quiet
    owners.apply(reader.read())
    before = dict(owners.owner)
    overlaps0 = len(owners.overlaps)
    touched: set[str] = set()
    t0 = time.monotonic_ns()
    await action()
    call_s = (time.monotonic_ns() - t0) / 1e9
    last_ns, last_seen = t0, time.monotonic()
    start = time.monotonic()
    settled = False
    while time.monotonic() - start < 40:
        await asyncio.sleep(0.05)
        events = reader.read()
        owners.apply(events)
        if events:
            last_ns = max(last_ns, *(ev.ns for ev in events))
            last_seen = time.monotonic()
            touched.update(ev.key for ev in events)
        if touched and len(owners.owner) == n and time.monotonic() - last_seen >= quiet:
            settled = True
            break
    keys_in_pool = len(await node.job_keys())
    return {
        "call_s": call_s,
        "settled_s": (last_ns - t0) / 1e9 if settled else None,
        "waited_s": time.monotonic() - start,
        "moved": sum(1 for k, w in before.items() if owners.owner.get(k) != w),
        "touched": len(touched),
        "running": len(owners.owner),
        "keys_in_pool": keys_in_pool,
        "overlaps": len(owners.overlaps) - overlaps0,
        "overlap_example": owners.overlaps[-1] if len(owners.overlaps) > overlaps0 else "",
        "after": dict(sorted(owners.by_worker().items())),
    }

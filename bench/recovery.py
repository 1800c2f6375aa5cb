"""Scenario 3: recovery. N running jobs over 4 worker processes; kill -9 one; time from the kill
until every job it ran has started again elsewhere (seen in the members' event file). Repeated
for each worker_ttl, on a fresh pool every run."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
import uuid
from typing import Any

from .common import (
    Context,
    EventReader,
    Members,
    Ownership,
    Result,
    client_node,
    dispatch_many,
    error_summary,
    shutdown_pool,
)

NAME = "recovery"


async def run(ctx: Context) -> Result:
    result = Result(NAME)
    for ttl in ctx.sizes.recovery_ttls:
        runs = [await _one(ctx, result, ttl, i) for i in range(ctx.sizes.recovery_runs)]
        done = [r["recovered_s"] for r in runs if r["recovered_s"] is not None]
        result.data[f"ttl_{ttl:g}"] = {"runs": runs}
        label = f"ttl {ttl:g} s"
        note = f"{ctx.sizes.recovery_jobs:,} jobs / 4 procs, {len(runs)} runs"
        if len(done) < len(runs):
            note += f"; {len(runs) - len(done)} run(s) never recovered"
        if not done:
            continue
        med, worst = statistics.median(done), max(done)
        result.data[f"ttl_{ttl:g}"] |= {"median_s": med, "max_s": worst}
        metric = f"kill -9 → all its jobs restarted, {label}"
        result.rows.append(
            ctx.timing(NAME, f"median_{ttl:g}", f"{metric}, median", med * 1000, note, "s")
        )
        result.rows.append(
            ctx.timing(NAME, f"max_{ttl:g}", f"{metric}, max", worst * 1000, note, "s")
        )
    return result


async def _one(ctx: Context, result: Result, ttl: float, index: int) -> dict[str, Any]:
    n, procs = ctx.sizes.recovery_jobs, ctx.sizes.recovery_processes
    pool = f"recovery-{ttl:g}-{index}-{uuid.uuid4().hex[:6]}"
    path = ctx.workdir / f"{pool}.events"
    reader, owners = EventReader(path), Ownership()
    out: dict[str, Any] = {"run": index, "recovered_s": None}
    async with (
        Members(ctx, pool) as members,
        client_node(ctx, pool, worker_ttl=ttl) as node,
    ):
        spawned = await members.spawn(procs, ttl=ttl, events=path)
        errors = await dispatch_many(node, [f"job-{i:05d}" for i in range(n)], 200)
        if errors:
            result.problems.append(f"recovery ttl {ttl:g}: dispatch_job {error_summary(errors)}")
        # Land the kill anywhere in the heartbeat cycle.
        await asyncio.sleep(random.uniform(0.2, 0.2 + ttl / 3))
        victim = spawned[index % procs]
        owners.apply(reader.read())
        before = dict(owners.owner)
        t0 = time.monotonic_ns()
        victim.kill()
        owners.apply(reader.read())  # anything written before the kill landed
        lost = owners.drop(victim.label)
        pending = set(lost)
        restarted: dict[str, int] = {}
        deadline = time.monotonic() + 3 * ttl + 15
        while pending and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            for ev in reader.read():
                owners.apply([ev])
                if ev.kind == "start" and ev.key in pending and ev.ns > t0:
                    pending.discard(ev.key)
                    restarted[ev.key] = ev.ns
        await asyncio.sleep(0.5)
        owners.apply(reader.read())
        moved_other = sum(
            1 for k, w in before.items() if k not in lost and owners.owner.get(k) != w
        )
        out |= {
            "victim_jobs": len(lost),
            "first_restart_s": (min(restarted.values()) - t0) / 1e9 if restarted else None,
            "not_restarted": len(pending),
            "running_after": len(owners.owner),
            "other_jobs_moved": moved_other,
            "overlaps": len(owners.overlaps),
        }
        if not pending:
            out["recovered_s"] = (max(restarted.values(), default=t0) - t0) / 1e9
        else:
            result.problems.append(
                f"recovery ttl {ttl:g} run {index}: {len(pending)} of {len(lost)} jobs of the "
                f"killed process did not start again within {3 * ttl + 15:g} s"
            )
        if len(owners.owner) != n:
            result.problems.append(
                f"recovery ttl {ttl:g} run {index}: {len(owners.owner)} of {n} jobs running"
            )
        if owners.overlaps:
            result.problems.append(
                f"recovery ttl {ttl:g} run {index}: {len(owners.overlaps)} jobs ran twice, "
                f"e.g. {owners.overlaps[0]}"
            )
        out["shutdown_s"] = await shutdown_pool(node, result)
        result.problems += members.warnings()
    return out

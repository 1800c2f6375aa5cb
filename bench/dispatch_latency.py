"""Scenario 1: dispatch latency. A client-only node (this process) and 2 worker processes (one
worker each, start() returns at once); sequential dispatch_job calls, each timed until it
returned (the job has started)."""

from __future__ import annotations

import time
import uuid

from .common import Context, Members, Result, client_node, shutdown_pool, summary_ms

NAME = "dispatch"


async def run(ctx: Context) -> Result:
    result = Result(NAME)
    n, warmup = ctx.sizes.latency_jobs, ctx.sizes.latency_warmup
    pool = f"latency-{uuid.uuid4().hex[:6]}"
    async with Members(ctx, pool) as members, client_node(ctx, pool) as node:
        await members.spawn(2)
        for i in range(warmup):
            await node.dispatch_job(f"warm-{i}")
        samples = []
        for i in range(n):
            t0 = time.perf_counter()
            await node.dispatch_job(f"job-{i}")
            samples.append(time.perf_counter() - t0)
        result.data["shutdown_s"] = await shutdown_pool(node, result)
        result.problems += members.warnings()

    stats = summary_ms(samples)
    result.data.update(stats)
    label = f"{n:,} sequential, 2 worker procs"
    for pct in ("p50", "p90", "p99"):
        ms = stats[f"{pct}_ms"]
        result.rows.append(ctx.timing(NAME, pct, f"dispatch→started {pct}", ms, label))
        result.data[f"{pct}_rtt"] = ctx.rtt(ms)
    return result

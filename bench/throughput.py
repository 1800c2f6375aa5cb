"""Scenario 2: throughput. One process dispatches N jobs with a bounded number in flight to 2
worker processes (one worker each); jobs started per second. The jobs stay running until the
pool is shut down afterwards."""

from __future__ import annotations

import os
import time
import uuid

from .common import (
    Context,
    Members,
    Result,
    Row,
    client_node,
    command_calls,
    cpu_seconds,
    delta,
    dispatch_many,
    error_summary,
    per,
    shutdown_pool,
)

NAME = "throughput"


async def run(ctx: Context) -> Result:
    result = Result(NAME)
    n, inflight = ctx.sizes.throughput_jobs, ctx.sizes.throughput_inflight
    pool = f"throughput-{uuid.uuid4().hex[:6]}"
    client = ctx.client()
    async with Members(ctx, pool) as members, client_node(ctx, pool) as node:
        procs = await members.spawn(2)
        await dispatch_many(node, [f"warm-{i}" for i in range(100)], inflight)
        assert ctx.server.proc is not None
        pids = {"redis-server": ctx.server.proc.pid} | {m.label: m.pid for m in procs}
        cpu0 = {name: cpu_seconds(pid) or 0.0 for name, pid in pids.items()}
        own0 = time.process_time()
        calls0 = await command_calls(client)
        t0 = time.perf_counter()
        errors = await dispatch_many(node, [f"job-{i}" for i in range(n)], inflight)
        elapsed = time.perf_counter() - t0
        calls = delta(await command_calls(client), calls0)
        cpu = {name: (cpu_seconds(pid) or 0.0) - cpu0[name] for name, pid in pids.items()}
        cpu["dispatcher (this process)"] = time.process_time() - own0
        counts = [int(await m.call("count")) for m in procs]
        result.data["shutdown_s"] = await shutdown_pool(node, result, timeout=90)
        result.problems += members.warnings()
    await client.aclose()

    started = n - len(errors)
    rate = started / elapsed
    if errors:
        result.problems.append(f"throughput: dispatch_job {error_summary(errors)}")
    result.data |= {
        "jobs": n,
        "inflight": inflight,
        "started": started,
        "elapsed_s": elapsed,
        "jobs_per_s": rate,
        "jobs_per_worker_process": counts,
        "commands_per_job": sum(calls.values()) / n,
        "commands_per_job_by_command": per(calls, n),
        "cpu_percent_during_run": {k: round(100 * v / elapsed, 1) for k, v in cpu.items()},
        "cpus": os.cpu_count(),
    }
    note = f"{n:,} jobs, {inflight} in flight, 2 worker procs"
    result.rows.append(Row(NAME, "jobs_per_s", "jobs started/s", rate, "jobs/s", None, note))
    busiest = max(cpu, key=lambda k: cpu[k])
    result.rows.append(
        Row(
            NAME,
            "commands_per_job",
            "Redis commands per job (batched)",
            sum(calls.values()) / n,
            "cmds",
            None,
            f"busiest: {busiest} {100 * cpu[busiest] / elapsed:.0f}% CPU",
        )
    )
    return result

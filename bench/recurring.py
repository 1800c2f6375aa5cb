"""Scenario: recurring jobs (issue 10 §5). N interval schedules (``node.schedule_job(every=)``,
a no-op task) on one node with a task worker in this process, registered at an even pace over
one period (so their grid anchors, and due times, spread evenly), then left to run for a few
periods.

Measured, from the runs' server timestamps (no client clock): lateness = claim time minus the
grid point it served (``anchor + k * every``), p50/p99/max; runs per second against the grid's
(missed or doubled occurrences show there); the upsert rate; and the round trips and Redis
commands the pool spent per run."""

from __future__ import annotations

import asyncio
import time

import redpool

from .common import Context, Result, Row, command_calls, delta, shutdown_pool, summary_ms

NAME = "recurring"
FULL_SIZES = (10_000, 60.0, 2)  # schedules, every (s), periods measured
SMOKE_SIZES = (300, 1.0, 3)

tasks = redpool.Tasks()


@tasks.task(name="bench.recur_noop")
async def noop(run: redpool.RunContext, params: None) -> None:
    return None


async def run(ctx: Context) -> Result:
    result = Result(NAME)
    count, every, periods = SMOKE_SIZES if ctx.smoke else FULL_SIZES
    pool = f"bench-recurring-{int(time.time())}"
    node = await redpool.add_node(pool, ctx.url(), worker_ttl=10.0)
    client = ctx.client()
    try:
        await node.add_task_worker(tasks, concurrency=1000)
        t0 = time.perf_counter()
        for at in range(0, count, 100):
            # paced over one period, so the grid's due times are spread evenly over it
            await asyncio.sleep(max(0.0, t0 + at * every / count - time.perf_counter()))
            await asyncio.gather(
                *(
                    node.schedule_job(f"r:{i}", noop, None, every=every)
                    for i in range(at, min(count, at + 100))
                )
            )
        register_s = time.perf_counter() - t0
        result.rows.append(
            Row(NAME, "upserts_s", f"{count} upserts, paced over {every:g} s", register_s, "s")
        )
        before = await command_calls(client)
        start_ms = round(time.time() * 1000)
        await asyncio.sleep(periods * every)
        after = await command_calls(client)
        end_ms = round(time.time() * 1000)
        await asyncio.sleep(min(every, 5.0))  # the runs due before end_ms have ended
        late, runs = await _lateness(node, start_ms, end_ms)
        expected = count * (end_ms - start_ms) / (every * 1000)
        if late:
            stats = summary_ms([ms / 1000 for ms in late])
            for pct in ("p50", "p99", "max"):
                result.rows.append(
                    ctx.timing(NAME, f"late_{pct}", f"due → start {pct}", stats[f"{pct}_ms"])
                )
        result.rows.append(
            Row(NAME, "runs_per_s", f"runs/s ({count} x every {every:g} s)",
                runs / ((end_ms - start_ms) / 1000), "jobs/s", note=f"grid: {expected:.0f} runs")
        )  # fmt: skip
        calls = delta(after, before)
        if runs:
            result.rows.append(
                Row(NAME, "cmds_per_run", "Redis commands per run (incl. scripts' own)",
                    sum(calls.values()) / runs, "")
            )  # fmt: skip
        result.data = {"schedules": count, "every_s": every, "runs": runs, "grid_runs": expected,
                       "late_ms": summary_ms([ms / 1000 for ms in late]) if late else None,
                       "commands": dict(calls)}  # fmt: skip
        if abs(runs - expected) > 0.02 * expected + 0.01 * count:
            result.problems.append(f"{runs} runs where the grid has {expected:.0f}")
    finally:
        await shutdown_pool(node, result)
        await client.aclose()
    return result


async def _lateness(node: redpool.Node, start_ms: int, end_ms: int) -> tuple[list[float], int]:
    """Lateness (ms) of every run whose grid point is in [start_ms, end_ms), from its
    history, and how many there were (each grid point there should have one run)."""
    infos = await node.schedules()
    late: list[float] = []
    for at in range(0, len(infos), 500):
        chunk = infos[at : at + 500]
        histories = await asyncio.gather(*(node.schedule_handle(s.name).runs() for s in chunk))
        for info, runs in zip(chunk, histories, strict=True):
            anchor = info.created_at.timestamp() * 1000
            period = (info.every or 0) * 1000
            for entry in runs:
                started = entry.started_at.timestamp() * 1000
                lateness = (started - anchor) % period if period else 0.0
                if start_ms <= started - lateness < end_ms:
                    late.append(round(lateness))
    return late, len(late)

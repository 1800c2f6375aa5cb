"""Recurring jobs: two nodes register the same schedules at start (one schedule each, pool-wide),
an interval job runs one at a time until max_runs, a cron job is woken to run now, and a job
chooses its own next run.

    REDIS_URL=redis://localhost:6379/0 python examples/recurring.py
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import timedelta

import redpool
from redpool import RunContext

tasks = redpool.Tasks()


@tasks.task(name="sessions.cleanup")
async def cleanup(run: RunContext, params: dict[str, int]) -> int:
    await asyncio.sleep(0.05)  # the work: one run at a time, pool-wide
    print(f"cleanup run on {run.worker_id.split('.')[0]}", flush=True)
    return params["max_age"]


@tasks.task(name="reports.nightly")
async def nightly(run: RunContext, params: None) -> None:
    print("nightly report built (woken early)", flush=True)


@tasks.task(name="feeds.poll")
async def poll(run: RunContext, params: None) -> redpool.NextRunIn:
    print("feed polled; next poll in 0.1 s", flush=True)
    return redpool.NextRunIn(0.1)  # Boundary's NextRunIn: the task picks its next run


async def register(node: redpool.Node) -> list[redpool.ScheduleHandle]:
    """What every node calls at start: an idempotent upsert by name."""
    return [
        await node.schedule_job(
            "cleanup:sessions", cleanup, {"max_age": 3600}, every=timedelta(seconds=0.2),
            max_runs=3,
        ),
        await node.schedule_job("report:nightly", nightly, None, cron="30 2 * * *",
                                tz="Europe/Berlin"),
        await node.schedule_job("feed:poll", poll, None, every=3600, run_now=True, max_runs=2),
    ]  # fmt: skip


async def main(url: str) -> None:
    pool = f"recurring-{uuid.uuid4().hex[:6]}"
    a = await redpool.add_node(pool, url)
    b = await redpool.add_node(pool, url)
    await a.add_task_worker(tasks)
    await b.add_task_worker(tasks)
    cleanup_job, report, feed = await register(a)
    await register(b)  # the same specs: nothing changes
    print("schedules:", [s.name for s in await a.schedules()])
    print("nightly report next at", (await report.info()).next_run_at)
    await report.wake()  # run now, once; the grid stays 02:30 Berlin time

    ended = await cleanup_job.job.wait(timeout=30)
    metrics = await cleanup_job.metrics()
    print(f"cleanup {ended.status.value} after {metrics.runs} runs ({metrics.ok} ok)")
    await feed.job.wait(timeout=30)
    await report.cancel()
    await a.shutdown()
    await b.close()


if __name__ == "__main__":
    asyncio.run(main(os.environ.get("REDIS_URL", "redis://localhost:6379/0")))

"""Tasks the recurring-job tests run in worker processes (tests/tasks/recurring_proc.py).
Each run appends ``<what> <key> <pid> <wall ms> <attempt> <tag> <scheduled_for ms>`` to the
Redis list named by $REDPOOL_RECUR_EVENTS (RPUSH: the list's order is the order the events
happened in)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import redis.asyncio as aioredis
import tenacity

import redpool
from redpool import Retry, RunContext

tasks = redpool.Tasks()
_client: list[aioredis.Redis] = []


async def record(run: RunContext, what: str, tag: str = "-") -> None:
    events = os.environ.get("REDPOOL_RECUR_EVENTS")
    if not events:
        return
    if not _client:
        _client.append(aioredis.Redis.from_url(os.environ["REDPOOL_RECUR_REDIS"]))
    due = 0 if run.scheduled_for is None else round(run.scheduled_for.timestamp() * 1000)
    line = f"{what} {run.key} {os.getpid()} {round(time.time() * 1000)} {run.attempt} {tag} {due}"
    await _client[0].rpush(events, line)


@tasks.task(name="recur.sleep")
async def sleep(run: RunContext, params: dict[str, Any]) -> None:
    """Sleeps params['s'] seconds (forever when absent), between a start and an end event."""
    # A cancel may come at any await: the start is written in any case, before "stopped".
    start = asyncio.ensure_future(record(run, "start", str(params.get("tag", "-"))))
    try:
        await asyncio.shield(start)
        await asyncio.sleep(params.get("s", 3600))
    except asyncio.CancelledError:
        await start
        await record(run, "stopped")
        raise
    await record(run, "end")


@tasks.task(
    name="recur.flaky",
    retry=Retry(max_attempts=3, wait=tenacity.wait_fixed(0.2)),
)
async def flaky(run: RunContext, params: dict[str, Any]) -> int:
    """Each occurrence fails at its first attempt when params['fail'] is set."""
    await record(run, "start")
    if params.get("fail") and run.attempt == 1:
        raise RuntimeError("the first attempt of each occurrence fails")
    await record(run, "end")
    return run.attempt


@tasks.task(name="recur.next")
async def chooses(run: RunContext, params: dict[str, Any]) -> redpool.NextRunIn:
    """Chooses its next run: params['n'] seconds after this one."""
    await record(run, "start")
    return redpool.NextRunIn(params["n"])


@tasks.task(name="recur.hooked", next_run_in=lambda run, outcome: 0.05)
async def hooked(run: RunContext, params: None) -> None:
    """Its definition's next_run_in says 0.05 s after each run."""
    await record(run, "start")

"""What every peer's trivial job does: append ``<job id> <time.monotonic()>`` to a Redis list,
which the harness reads (CLOCK_MONOTONIC is shared by all processes of the machine)."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Awaitable
from typing import cast

import redis
import redis.asyncio as aioredis

RECORDS = "bench:records"


@functools.cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["BENCH_RECORD_URL"])


@functools.cache
def _async_client() -> aioredis.Redis:
    return aioredis.Redis.from_url(os.environ["BENCH_RECORD_URL"])


def record(job_id: int) -> None:
    now = time.monotonic()
    _client().rpush(RECORDS, f"{job_id} {now!r}")


async def record_async(job_id: int) -> None:
    now = time.monotonic()
    await cast(Awaitable[int], _async_client().rpush(RECORDS, f"{job_id} {now!r}"))

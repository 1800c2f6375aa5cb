"""arq: ``arq bench.peers.arq_worker.WorkerSettings`` (default settings: poll_delay 0.5 s)."""

from __future__ import annotations

import os
from typing import Any

from arq.connections import RedisSettings

from .record import record_async


async def trivial(ctx: dict[str, Any], job_id: int) -> None:
    await record_async(job_id)


class WorkerSettings:
    functions = [trivial]  # noqa: RUF012 (arq reads class attributes)
    redis_settings = RedisSettings.from_dsn(os.environ["BENCH_BROKER_URL"])

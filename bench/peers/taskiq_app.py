"""taskiq: ``taskiq worker bench.peers.taskiq_app:broker --workers 2``; taskiq-redis's
RedisStreamBroker (XREADGROUP) with its Redis result backend, otherwise default settings."""

from __future__ import annotations

import os

from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from .record import record_async

broker = RedisStreamBroker(os.environ["BENCH_BROKER_URL"]).with_result_backend(
    RedisAsyncResultBackend(os.environ["BENCH_BROKER_URL"])
)


@broker.task(task_name="trivial")
async def trivial(job_id: int) -> None:
    await record_async(job_id)

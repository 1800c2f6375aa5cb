"""redpool: a distributed, Redis-backed worker pool.

Processes join a named pool; any of them dispatches a job by key; exactly one worker in the
pool runs each key; when a worker dies its jobs move to live workers within seconds.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from structlog.typing import FilteringBoundLogger

from ._lifecycle import StateLostHook, purge_pool
from ._node import Node
from ._options import MIB, Options
from ._redis import TRANSIENT, connect
from ._ticker import Ticker
from ._types import (
    Job,
    JobHandler,
    JobInfo,
    JobParam,
    JobPlan,
    JobProducer,
    JobState,
    NotificationHandler,
    WorkerInfo,
)
from ._version import __version__
from ._worker import Worker
from .errors import (
    DispatchTimeoutError,
    InvalidArgumentError,
    JobExistsError,
    JobNotFoundError,
    JobStartError,
    PoolClosedError,
    PoolError,
    PoolShuttingDownError,
    QueueFullError,
    RedisUnavailableError,
    Requeue,
    ScheduleStop,
    StopTimeoutError,
)

__all__ = [
    "DispatchTimeoutError",
    "InvalidArgumentError",
    "Job",
    "JobExistsError",
    "JobHandler",
    "JobInfo",
    "JobNotFoundError",
    "JobParam",
    "JobPlan",
    "JobProducer",
    "JobStartError",
    "JobState",
    "Node",
    "NotificationHandler",
    "PoolClosedError",
    "PoolError",
    "PoolShuttingDownError",
    "QueueFullError",
    "RedisUnavailableError",
    "Requeue",
    "ScheduleStop",
    "StopTimeoutError",
    "Ticker",
    "Worker",
    "WorkerInfo",
    "__version__",
    "add_node",
    "purge_pool",
]


async def add_node(
    pool_name: str,
    redis: aioredis.Redis | str,
    *,
    worker_ttl: float = 10.0,
    ack_grace_period: float = 20.0,
    max_queued_jobs: int = 1000,
    worker_shutdown_ttl: float = 120.0,
    job_sink_block: float = 5.0,
    client_only: bool = False,
    max_payload_size: int = MIB,
    start_timeout: float | None = None,
    sync_threads: int = 32,
    logger: FilteringBoundLogger | None = None,
    on_state_lost: StateLostHook | None = None,
) -> Node:
    """Join (or create) the pool ``pool_name`` on ``redis`` (a client or a URL) and return
    this process's node in it. See the README for what each option does."""
    options = Options(
        worker_ttl=worker_ttl,
        ack_grace_period=ack_grace_period,
        max_queued_jobs=max_queued_jobs,
        worker_shutdown_ttl=worker_shutdown_ttl,
        job_sink_block=job_sink_block,
        client_only=client_only,
        max_payload_size=max_payload_size,
        start_timeout=start_timeout,
        sync_threads=sync_threads,
        on_state_lost=on_state_lost,
    )
    client, owns = connect(redis)
    node = Node(pool_name, client, owns, options, logger)
    try:
        await node._open()
    except TRANSIENT as exc:
        if owns:
            await client.aclose()
        raise RedisUnavailableError(f"cannot join pool {pool_name!r}: {exc!r}") from exc
    return node

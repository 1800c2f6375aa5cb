"""redpool: a distributed, Redis-backed worker pool.

Processes join a named pool; any of them dispatches a job by key; exactly one worker in the
pool runs each key; when a worker dies its jobs move to live workers within seconds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import cast

import redis.asyncio as aioredis
import structlog
from structlog.typing import FilteringBoundLogger

from ._lifecycle import StateLostHook, purge_pool
from ._node import Node
from ._options import MIB, Options
from ._redis import address, check_server, connect, join_error, wait_ready
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
    EventLoopError,
    Fail,
    HoldCycleError,
    IdempotencyConflictError,
    InvalidArgumentError,
    InvalidTransitionError,
    JobCanceledError,
    JobExistsError,
    JobFailedError,
    JobNotFoundError,
    JobSkippedError,
    JobStartError,
    JobTimedOutError,
    JobUnsuccessfulError,
    NotSuspendableError,
    PauseTimeoutError,
    PoolClosedError,
    PoolError,
    PoolShuttingDownError,
    QueueFullError,
    RedisConfigError,
    RedisFullError,
    RedisUnavailableError,
    Requeue,
    RetryLater,
    RunStoppedError,
    ScheduleStop,
    Skip,
    StopTimeoutError,
    TaskProcessError,
    UnknownTaskError,
    WaitTimeoutError,
)
from .tasks import (
    ErrorInfo,
    JobHandle,
    JobMetrics,
    NextRunIn,
    Page,
    Progress,
    Retry,
    RunContext,
    RunInfo,
    ScheduleHandle,
    ScheduleInfo,
    ScheduleMetrics,
    Status,
    Submission,
    SyncRunContext,
    Task,
    Tasks,
    TaskWorker,
)
from .tasks import JobInfo as TaskInfo

__all__ = [
    "DispatchTimeoutError",
    "ErrorInfo",
    "EventLoopError",
    "Fail",
    "HoldCycleError",
    "IdempotencyConflictError",
    "InvalidArgumentError",
    "InvalidTransitionError",
    "Job",
    "JobCanceledError",
    "JobExistsError",
    "JobFailedError",
    "JobHandle",
    "JobHandler",
    "JobInfo",
    "JobMetrics",
    "JobNotFoundError",
    "JobParam",
    "JobPlan",
    "JobProducer",
    "JobSkippedError",
    "JobStartError",
    "JobState",
    "JobTimedOutError",
    "JobUnsuccessfulError",
    "NextRunIn",
    "Node",
    "NotSuspendableError",
    "NotificationHandler",
    "Page",
    "PauseTimeoutError",
    "PoolClosedError",
    "PoolError",
    "PoolShuttingDownError",
    "Progress",
    "QueueFullError",
    "RedisConfigError",
    "RedisFullError",
    "RedisUnavailableError",
    "Requeue",
    "Retry",
    "RetryLater",
    "RunContext",
    "RunInfo",
    "RunStoppedError",
    "ScheduleHandle",
    "ScheduleInfo",
    "ScheduleMetrics",
    "ScheduleStop",
    "Skip",
    "Status",
    "StopTimeoutError",
    "Submission",
    "SyncRunContext",
    "Task",
    "TaskInfo",
    "TaskProcessError",
    "TaskWorker",
    "Tasks",
    "Ticker",
    "UnknownTaskError",
    "WaitTimeoutError",
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
    connect_timeout: float = 10.0,
    max_connections: int = 50,
    default_keep: float = 86_400.0,
    default_keep_failed: float = 7 * 86_400.0,
    max_retained: int = 100_000,
    load_epsilon: float = 0.25,
    logger: FilteringBoundLogger | logging.Logger | None = None,
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
        connect_timeout=connect_timeout,
        max_connections=max_connections,
        default_keep=default_keep,
        default_keep_failed=default_keep_failed,
        max_retained=max_retained,
        load_epsilon=load_epsilon,
    )
    log = _structured(logger)
    client, owns = connect(redis, options.max_connections, options.socket_timeout)
    try:
        await wait_ready(client, options.connect_timeout)
        await check_server(client, log.bind(pool=pool_name))
        node = Node(pool_name, client, owns, options, log)
        await node._open()
    except BaseException as exc:
        if owns:
            await asyncio.shield(client.aclose())
        mapped = join_error(exc, pool_name, address(client), options.connect_timeout)
        if mapped is exc:
            raise
        raise mapped from exc
    return node


def _structured(logger: object) -> FilteringBoundLogger:
    """A structlog logger for ``logger``: structlog's own, or a stdlib Logger wrapped so that
    each event reaches it as one line with its fields (``event='...' pool='...'``)."""
    if logger is None:
        return cast(FilteringBoundLogger, structlog.get_logger("redpool"))
    if isinstance(logger, logging.Logger):
        return cast(
            FilteringBoundLogger,
            structlog.wrap_logger(
                logger,
                wrapper_class=structlog.stdlib.BoundLogger,
                processors=[
                    structlog.stdlib.filter_by_level,
                    structlog.processors.format_exc_info,
                    structlog.processors.KeyValueRenderer(key_order=["event"]),
                ],
            ),
        )
    if all(callable(getattr(logger, name, None)) for name in ("bind", "info", "warning")):
        return cast(FilteringBoundLogger, logger)
    raise InvalidArgumentError(
        f"logger must be a structlog logger or a logging.Logger, got {type(logger).__name__}"
    )

"""A task worker process for the tests: ``python -m tests.tasks.worker_proc <redis url>
<pool> <concurrency> [queue[=cap] ...]`` (worker_ttl 1 s, or $REDPOOL_TEST_WORKER_TTL).
Prints ``ready <node id>`` once it serves, and runs until it is killed or gets SIGTERM (then
it closes its node). $REDPOOL_TASK_ISOLATION and $REDPOOL_KILL_GRACE set
``add_task_worker(isolation=, kill_grace=)``."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import structlog

import redpool
from tests.tasks.sample_tasks import tasks


async def main(url: str, pool: str, concurrency: int, queues: list[str]) -> None:
    ttl = float(os.environ.get("REDPOOL_TEST_WORKER_TTL", "1.0"))  # longer: it may be stopped
    node = await redpool.add_node(pool, url, worker_ttl=ttl, job_sink_block=1.0)
    caps: dict[str, int | None] = {}
    for spec in queues or ["default"]:
        name, _, cap = spec.partition("=")
        caps[name] = int(cap) if cap else None
    isolation = os.environ.get("REDPOOL_TASK_ISOLATION", "async")
    grace = float(os.environ.get("REDPOOL_KILL_GRACE", "5"))
    await node.add_task_worker(
        tasks,
        concurrency=concurrency,
        queues=caps,
        isolation=isolation,  # type: ignore[arg-type]
        kill_grace=grace,
    )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", node.id, flush=True)
    await stop.wait()
    await node.close()


if __name__ == "__main__":
    # stdout carries the ready line; logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]))

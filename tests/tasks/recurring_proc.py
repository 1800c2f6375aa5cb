"""A task worker process for the recurring-job tests: ``python -m tests.tasks.recurring_proc
<redis url> <pool> [schedule json ...]``. It serves tests/tasks/recurring_tasks.py, upserts
each schedule given (``{"name", "task", "params", ...schedule_job keywords}``, as a node does
at every start), prints ``ready <node id>`` and runs until killed or SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import structlog

import redpool
from tests.tasks.recurring_tasks import tasks


async def main(url: str, pool: str, schedules: list[str]) -> None:
    # 3 s: an event-loop block of a second or so on a loaded machine does not fence it
    # (a fenced run runs again); the kill -9 test asks for 1 s, so the victim's lease
    # expires before the next due time.
    ttl = float(os.environ.get("REDPOOL_RECUR_TTL", "3.0"))
    node = await redpool.add_node(pool, url, worker_ttl=ttl, job_sink_block=1.0)
    await node.add_task_worker(tasks, concurrency=4)
    for raw in schedules:
        spec = json.loads(raw)
        await node.schedule_job(spec.pop("name"), spec.pop("task"), spec.pop("params"), **spec)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", node.id, flush=True)
    await stop.wait()
    await node.close()


if __name__ == "__main__":
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))

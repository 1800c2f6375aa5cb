"""SAQ: ``saq bench.peers.saq_worker.settings --workers 2``; Redis queue, default settings
(concurrency 10 per process)."""

from __future__ import annotations

import os
from typing import Any

from saq import Queue

from .record import record_async


async def trivial(ctx: dict[str, Any], *, job_id: int) -> None:
    await record_async(job_id)


settings = {
    "queue": Queue.from_url(os.environ["BENCH_BROKER_URL"]),
    "functions": [trivial],
}

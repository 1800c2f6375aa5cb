"""Submits from another process for the tests: ``python -m tests.tasks.submit_proc <redis
url> <pool> <count> <idempotency key>`` submits ``add(1, 1)`` ``count`` times at once with
that idempotency key and prints ``<key> <existing>`` per handle."""

from __future__ import annotations

import asyncio
import sys

import structlog

import redpool
from tests.tasks.sample_tasks import AddParams, add


async def main(url: str, pool: str, count: int, idempotency_key: str) -> None:
    node = await redpool.add_node(pool, url, client_only=True, worker_ttl=1.0)
    handles = await asyncio.gather(
        *(node.submit(add, AddParams(1, 1), idempotency_key=idempotency_key) for _ in range(count))
    )
    for handle in handles:
        print(handle.key, int(handle.existing), flush=True)
    await node.close()


if __name__ == "__main__":
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))

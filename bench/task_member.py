"""A redpool node with a task worker in its own OS process, for the tasks benchmark.

    python -m bench.task_member URL POOL --label w0 [--concurrency N]

With ``--concurrency 0`` the node hosts no task worker and only submits. It prints ``ready
<node id>``, then obeys one command per stdin line, answering ``ok ...`` or ``error ...``:

    trips       JSON of the round trips its Redis connections sent, by command
    submit N    submit_many N ``bench.trivial`` jobs (params: 0..N-1) and keep the handles

The task ``bench.trivial`` appends ``<job id> <time.monotonic()>`` to the record list on the
record server (``BENCH_RECORD_URL``), as every peer's trivial job does (bench/peers/record.py).
It leaves (node.close()) on SIGTERM or end of input, or once the pool was shut down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import redpool

from .cost import counting_client
from .member import configure_logging, serve
from .peers.record import record_async

tasks = redpool.Tasks()


@tasks.task(name="bench.trivial")
async def trivial(run: redpool.RunContext, job_id: int) -> None:
    await record_async(job_id)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("pool")
    parser.add_argument("--label", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()

    configure_logging()
    client, sent = counting_client(args.url)
    node = await redpool.add_node(args.pool, client, max_queued_jobs=100_000)
    if args.concurrency > 0:
        await node.add_task_worker(tasks, concurrency=args.concurrency)
    handles: list[Any] = []

    async def command(line: str) -> str:
        word, *rest = line.split()
        if word == "trips":
            return json.dumps(dict(sent))
        if word == "submit":
            t0 = time.perf_counter()
            n = int(rest[0])
            for at in range(0, n, 500):
                batch = [("bench.trivial", i) for i in range(at, min(n, at + 500))]
                handles.extend(await node.submit_many(batch))
            return f"{time.perf_counter() - t0:.3f}"
        raise ValueError(f"unknown command {line!r}")

    try:
        await serve(node, command)
    finally:
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())

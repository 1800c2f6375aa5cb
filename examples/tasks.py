"""Tasks across processes: two task worker processes run submitted jobs; the client
(client-only) submits, waits for results, cancels one and lists the jobs.

    REDIS_URL=redis://localhost:6379/0 python examples/tasks.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from dataclasses import dataclass

import tenacity

import redpool
from redpool import Retry, RunContext

tasks = redpool.Tasks()


@dataclass
class Resize:
    image: str
    width: int


@tasks.task(name="images.resize", timeout=10)
async def resize(run: RunContext, job: Resize) -> str:
    await asyncio.sleep(0.05)  # the work
    return f"{job.image}@{job.width}px by {run.worker_id.split('.')[0]}"


@tasks.task(name="images.flaky", retry=Retry(max_attempts=3, wait=tenacity.wait_fixed(0.1)))
async def flaky(run: RunContext, image: str) -> str:
    if run.attempt < 3:
        raise ConnectionError(f"storage hiccup on attempt {run.attempt}")
    return f"{image} stored on attempt {run.attempt}"


@tasks.task(name="images.forever")
async def forever(run: RunContext, params: None) -> None:
    await asyncio.sleep(3600)


async def worker(url: str, pool: str) -> None:
    node = await redpool.add_node(pool, url, worker_ttl=2.0)
    await node.add_task_worker(tasks, concurrency=4)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    await node.close()


async def client(url: str) -> None:
    pool = f"images-{uuid.uuid4().hex[:8]}"
    procs = []
    for _ in range(2):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "worker", url, pool,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        while (await proc.stdout.readline()).strip() != b"ready":
            pass
        procs.append(proc)
    node = await redpool.add_node(pool, url, client_only=True)
    handles = [await node.submit(resize, Resize(f"img{i}.png", 320)) for i in range(6)]
    for handle in handles:
        print("result:", await handle.result(timeout=10))
    print("retried:", await node.run(flaky, "cat.png", timeout=10))
    stuck = await node.submit(forever, None, key="forever")
    await asyncio.sleep(0.2)
    print("canceled:", (await stuck.cancel(timeout=10)).value)
    stats = await node.jobs.stats()
    print("succeeded:", stats.statuses[redpool.Status.SUCCEEDED])
    await node.shutdown()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.close()
        await proc.wait()


if __name__ == "__main__":
    url = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    if sys.argv[1:2] == ["worker"]:
        asyncio.run(worker(sys.argv[2], sys.argv[3]))
    else:
        asyncio.run(client(url))

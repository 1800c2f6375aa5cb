"""Pause, resume, suspend across processes: a task worker process with one slot runs an
export; the client (client-only) pauses it (it waits at a checkpoint, keeping its slot and
its memory), resumes it, then suspends it (it stops at a checkpoint and gives its slot to a
queued job) and resumes it again: it goes on from its checkpoint state.

    REDIS_URL=redis://localhost:6379/0 python examples/control.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

import redpool
from redpool import RunContext

tasks = redpool.Tasks()


@tasks.task(name="export.rows", suspendable=True)
async def export(run: RunContext, rows: int) -> str:
    done = (run.checkpoint_state or {}).get("done", 0)  # where a suspended run stopped
    while done < rows:
        await asyncio.sleep(0.01)  # export one row
        done += 1
        await run.progress(done, rows)
        await run.checkpoint({"done": done})  # may pause here, or stop for a suspend
    return f"exported {rows} rows ({'resumed' if run.resumed else 'in one go'})"


@tasks.task(name="export.ping")
async def ping(run: RunContext, params: None) -> str:
    return "pong"


async def worker(url: str, pool: str) -> None:
    node = await redpool.add_node(pool, url, worker_ttl=2.0)
    await node.add_task_worker(tasks, concurrency=1)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until EOF
    await node.close()


async def progress(handle: redpool.JobHandle[str]) -> float:
    info = await handle.info()
    return info.progress.completed if info.progress else 0.0


async def client(url: str) -> None:
    pool = f"exports-{uuid.uuid4().hex[:8]}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "worker", url, pool,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    while (await proc.stdout.readline()).strip() != b"ready":
        pass
    node = await redpool.add_node(pool, url, client_only=True)
    handle = await node.submit(export, 150, key="export:42")
    for _ in range(200):  # until some rows are done (at most 10 s)
        if await progress(handle) >= 10:
            break
        await asyncio.sleep(0.05)
    print("pause:", (await handle.pause(ack_timeout=2.0)).value)
    print("resume:", (await handle.resume()).value)
    queued = await node.submit(ping, None)  # waits: the only slot is taken
    print("suspend:", (await handle.suspend(timeout=10)).value)
    print("the freed slot ran:", await queued.result(timeout=10))
    await handle.resume()
    print("result:", await handle.result(timeout=30))
    await node.shutdown()
    assert proc.stdin is not None
    proc.stdin.close()
    await proc.wait()


if __name__ == "__main__":
    url = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    if sys.argv[1:2] == ["worker"]:
        asyncio.run(worker(sys.argv[2], sys.argv[3]))
    else:
        asyncio.run(client(url))

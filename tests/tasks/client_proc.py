"""A client node in a process of its own for tests/tasks/test_control_model.py:
``python -m tests.tasks.client_proc <redis url> <pool>``. Prints ``ready`` once its node is
up, then reads one JSON request a line (``{"id": n, "op": ..., "key": ...}``), runs each
concurrently with ``act`` (a pause waiting for its acknowledgement does not hold up the
status reads meanwhile) and writes ``{"id": n, ...outcome}`` a line."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import structlog

import redpool
from tests.tasks.sample_tasks import puppet, rigid_puppet

TASKS = {"puppet": puppet, "rigid": rigid_puppet}
Handles = dict[tuple[str, int], redpool.JobHandle[Any]]


async def act(node: redpool.Node, handles: Handles, req: dict[str, Any]) -> dict[str, Any]:
    """One action of the model test on ``node``, as JSON: ``status`` (None once deleted),
    ``generation``/``existing`` for a submit, or ``error`` (the class name) with the
    error's ``status`` (None if it has none). ``handles`` keeps the handles this process
    submitted, pinned to their generations, for ``info`` of a generation."""
    op, key = req["op"], req["key"]
    try:
        if op == "submit":
            kind = req["kind"]
            where: dict[str, Any] = {"later": {"delay": 60}, "nobody": {"queue": "nobody"}}.get(
                kind, {}
            )
            h = await node.submit(
                TASKS[req["task"]], None, key=key, if_active=req["if_active"], **where
            )
            if h.generation is not None:
                handles[key, h.generation] = h
            return {"generation": h.generation, "existing": h.existing}
        if op == "info":
            g = req.get("generation", 0)
            info = await (handles[key, g] if g else node.job(key)).info()
            return {"status": info.status.value, "generation": info.generation}
        handle = node.job(key)
        if op == "cancel":
            status = await handle.cancel(wait=False)
        elif op == "pause":
            status = await handle.pause(ack_timeout=req["ack_timeout"])
        elif op == "resume":
            status = await handle.resume()
        elif op == "suspend":
            status = await handle.suspend(wait=req["wait"], timeout=10)
        else:
            await handle.delete()
            return {"status": None}
        return {"status": status.value}
    except (redpool.PoolError, TimeoutError) as exc:
        return {"error": type(exc).__name__, "status": getattr(exc, "status", None)}


async def main(url: str, pool: str) -> None:
    node = await redpool.add_node(pool, url, client_only=True, worker_ttl=1.0)
    handles: Handles = {}
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    running: set[asyncio.Task[None]] = set()

    async def answer(req: dict[str, Any]) -> None:
        if req["op"] == "infos":
            out: dict[str, Any] = {
                "infos": [await act(node, handles, one) for one in req["requests"]]
            }
        else:
            out = await act(node, handles, req)
        sys.stdout.write(json.dumps({"id": req["id"], **out}) + "\n")
        sys.stdout.flush()

    print("ready", flush=True)
    while line := await reader.readline():
        task = asyncio.create_task(answer(json.loads(line)))
        running.add(task)
        task.add_done_callback(running.discard)
    await node.close()


if __name__ == "__main__":
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    asyncio.run(main(sys.argv[1], sys.argv[2]))

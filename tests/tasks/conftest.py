"""Fixtures of the tasks tests: task worker processes on the test's pool."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO

import pytest
from redis.asyncio import Redis

from tests.procs import ROOT


class TaskWorkerProc:
    def __init__(self, proc: asyncio.subprocess.Process, node_id: str) -> None:
        self.proc = proc
        self.node_id = node_id

    def kill(self) -> None:
        self.proc.kill()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 20)


async def spawn_worker(
    args: list[str], env: dict[str, str], stderr: IO[bytes] | None = None
) -> TaskWorkerProc:
    """Start ``python -m <args>`` and wait for its ``ready <worker id>`` line."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *args, cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
    )  # fmt: skip
    assert proc.stdout is not None
    line: list[str] = []
    while not line or line[0] != "ready":
        raw = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert raw, f"worker process {args[0]} did not start"
        line = raw.decode().split()
    return TaskWorkerProc(proc, line[1])


@pytest.fixture
def task_events(tmp_path: Path) -> Path:
    return tmp_path / "task-events.log"


@pytest.fixture
async def task_workers(
    redis_url: str, pool_name: str, task_events: Path
) -> AsyncIterator[Callable[..., Awaitable[TaskWorkerProc]]]:
    """Start task worker processes (tests/tasks/worker_proc.py); killed at the end. The
    test keys the sample tasks use (``test:*``: gates, start counts) start out empty."""
    started: list[TaskWorkerProc] = []
    client = Redis.from_url(redis_url)
    async for key in client.scan_iter("test:*"):
        await client.delete(key)
    await client.aclose()

    async def start(
        concurrency: int = 4,
        *queues: str,
        url: str = "",
        isolation: str = "async",
        kill_grace: float = 5.0,
        log: Path | None = None,
    ) -> TaskWorkerProc:
        env = {
            **os.environ,
            "REDPOOL_TASK_EVENTS": str(task_events),
            "REDPOOL_TASK_ISOLATION": isolation,
            "REDPOOL_KILL_GRACE": str(kill_grace),
            "REDPOOL_TEST_REDIS": url or redis_url,
        }
        worker = await spawn_worker(
            ["tests.tasks.worker_proc", url or redis_url, pool_name, str(concurrency), *queues],
            env,
            None if log is None else log.open("ab"),
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.proc.returncode is None:
            worker.kill()
            await worker.proc.wait()


def read_events(path: Path) -> list[list[str]]:
    """The runs' event lines, split: [ns, pid, what, key, attempt, epoch]."""
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line]

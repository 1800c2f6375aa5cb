"""Test helpers: waiting on a condition with a deadline, and handlers that record calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import redpool


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, what: str = ""
) -> None:
    """Wait until ``condition()`` holds; fail the test if it does not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {what or condition}")
        await asyncio.sleep(0.01)


class Recorder:
    """An async handler that records its calls; start() can be made to fail or wait."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.running: dict[str, redpool.Job] = {}
        self.started: list[str] = []
        self.stopped: list[str] = []
        self.notifications: list[tuple[str, bytes]] = []
        self.fail_with: Exception | None = None
        self.gate: asyncio.Event | None = None

    async def start(self, job: redpool.Job) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        assert job.key not in self.running, f"{job.key} started twice on {self.name}"
        self.running[job.key] = job
        self.started.append(job.key)

    async def stop(self, key: str) -> None:
        self.running.pop(key, None)
        self.stopped.append(key)

    async def handle_notification(self, key: str, payload: bytes) -> None:
        self.notifications.append((key, payload))


class SlowStop:
    """A handler whose stop() takes 0.3 s, as real jobs take time to wind down."""

    def __init__(self) -> None:
        self.stopped: list[str] = []

    async def start(self, job: redpool.Job) -> None:
        pass

    async def stop(self, key: str) -> None:
        await asyncio.sleep(0.3)
        self.stopped.append(key)

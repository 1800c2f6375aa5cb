"""Task utilities: supervised background loops, timeouts, cancellation.

A supervised loop survives errors: each iteration is retried with exponential backoff and
jitter (tenacity), logged with the loop's name, and only cancellation stops it. Timeouts use
asyncio.wait rather than asyncio.wait_for, whose Python 3.10/3.11 versions can lose a
cancellation that arrives together with the timeout (the task then never stops)."""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from structlog.typing import FilteringBoundLogger
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

T = TypeVar("T")


async def call_maybe_async(fn: Callable[..., Any], *args: Any) -> Any:
    """Await an async user callback; run a sync one in a thread so it cannot stall the
    event loop (and with it the node's lease renewals)."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)
    result = await asyncio.to_thread(fn, *args)
    return await result if inspect.isawaitable(result) else result


def supervise(
    name: str,
    step: Callable[[], Awaitable[bool | None]],
    log: FilteringBoundLogger,
    max_backoff: float = 2.0,
) -> asyncio.Task[None]:
    """Run ``step`` again and again in a task named ``name`` until the task is cancelled or
    a step returns True (its work is over, e.g. a schedule that ended)."""

    def report(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "background loop failed; retrying",
            loop=name,
            error=repr(exc),
            attempt=state.attempt_number,
            retry_in=round(state.upcoming_sleep, 3),
        )

    async def run() -> None:
        done: bool | None = False
        while not done:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(Exception),
                wait=wait_exponential_jitter(multiplier=0.02, max=max_backoff, jitter=0.05),
                before_sleep=report,
            ):
                with attempt:
                    done = await step()

    return asyncio.create_task(run(), name=f"redpool:{name}")


class TaskSet:
    """Fire-and-forget tasks: held until done (so they are not collected), and a failure is
    logged with what the task was doing instead of vanishing with the task."""

    def __init__(self, log: FilteringBoundLogger) -> None:
        self._log = log
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            if not task.cancelled() and (exc := task.exception()) is not None:
                self._log.error("background task failed", task=what, error=repr(exc))

        task.add_done_callback(done)


async def within(aw: Awaitable[T], timeout: float | None) -> T:
    """Await ``aw``; after ``timeout`` seconds cancel it and raise asyncio.TimeoutError."""
    if sys.version_info >= (3, 11):  # asyncio.timeout: no extra task, cancellation-safe
        async with asyncio.timeout(timeout):
            return await aw
    task = asyncio.ensure_future(aw)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except BaseException:
        task.cancel()
        raise
    if not done:
        task.cancel()
        await asyncio.wait({task})
        raise asyncio.TimeoutError
    return task.result()


async def wait_or_timeout(event: asyncio.Event, delay: float) -> None:
    """Sleep ``delay`` seconds, or less if ``event`` is set meanwhile (then clear it)."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=delay)
    finally:
        waiter.cancel()
    event.clear()


async def cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel tasks and wait until they are done."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

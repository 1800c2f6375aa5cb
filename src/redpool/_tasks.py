"""Task utilities: supervised background loops, fire-and-forget tasks, timeouts and
cancellation (the threads that run sync user callbacks are in ``_threads``).

A supervised loop survives errors: a failed iteration is retried with exponential backoff and
jitter (tenacity), reported with the loop's name, and only cancellation stops it. Timeouts use
asyncio.wait rather than asyncio.wait_for, whose Python 3.10/3.11 versions can lose a
cancellation that arrives together with the timeout (the task then never stops)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, Protocol, TypeVar

from structlog.typing import FilteringBoundLogger
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter

T = TypeVar("T")

CANCEL_GRACE = 1.0
"""Seconds a cancelled user callback gets to unwind before it is abandoned."""


class Failures(Protocol):
    """Where a supervised loop reports its failures and its recovery (``_redis.Outage``)."""

    def failed(self, loop: str, exc: BaseException, retry_in: float) -> None: ...

    def succeeded(self, loop: str) -> None: ...


def supervise(
    name: str,
    step: Callable[[], Awaitable[bool | None]],
    failures: Failures,
    max_backoff: float = 2.0,
) -> asyncio.Task[None]:
    """Run ``step`` again and again in a task named ``name`` until the task is cancelled or
    a step returns True (its work is over, e.g. a schedule that ended). Steps run in a plain
    loop: tenacity, whose per-attempt machinery costs more than a fast step, takes over only
    after a step failed, retrying with backoff until one succeeds."""

    def report(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None:
            failures.failed(name, exc, state.upcoming_sleep)

    async def recover(failure: Exception) -> bool | None:
        """Retry ``step`` after ``failure`` (attempt 1), with backoff, until one succeeds."""
        first = True
        done: bool | None = False
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential_jitter(multiplier=0.02, max=max_backoff, jitter=0.05),
            before_sleep=report,
        ):
            with attempt:
                if first:
                    first = False
                    raise failure
                done = await step()
        failures.succeeded(name)
        return done

    async def run() -> None:
        done: bool | None = False
        while not done:
            try:
                done = await step()
            except Exception as exc:
                done = await recover(exc)

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

    def __iter__(self) -> Iterator[asyncio.Task[None]]:
        return iter(list(self._tasks))


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


async def finish_within(task: asyncio.Future[Any], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``task``; True if it finished. Otherwise cancel it
    and give it CANCEL_GRACE to unwind; one that ignores the cancellation (or runs in a thread,
    which cannot be cancelled) is abandoned: nothing waits for it any longer."""
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if done:
        return True
    await abandon(task)
    return False


async def abandon(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` and wait CANCEL_GRACE at most for it to end."""
    task.cancel()
    await asyncio.wait({task}, timeout=CANCEL_GRACE)
    task.add_done_callback(_retrieve)  # an abandoned task's late failure is not an error


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def wait_or_timeout(event: asyncio.Event, delay: float) -> None:
    """Sleep ``delay`` seconds, or less if ``event`` is set meanwhile (then clear it)."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=delay)
    finally:
        waiter.cancel()
    event.clear()


async def cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel tasks and wait until they are done. The cancellation is repeated until they
    are: redis-py can lose one (on Python 3.11 the zero timeout of its connection check, in
    ``can_read_destructive``, swallows a cancellation that lands in it, and the loop goes on
    reading: close() hung), so whatever is still running a second later is cancelled again."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        # Long enough not to interrupt the cleanup of a cancellation that did arrive (a
        # connection half disconnected would go back to the pool).
        _, pending = await asyncio.wait(pending, timeout=1.0)
    await asyncio.gather(*tasks, return_exceptions=True)

"""Named background loops that survive errors: each iteration is retried with exponential
backoff and jitter (tenacity), logged with the loop's name, and only cancellation stops it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from structlog.typing import FilteringBoundLogger
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential_jitter


def supervise(
    name: str,
    step: Callable[[], Awaitable[None]],
    log: FilteringBoundLogger,
    max_backoff: float = 2.0,
) -> asyncio.Task[None]:
    """Run ``step`` again and again in a task named ``name`` until the task is cancelled."""

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
        while True:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(Exception),
                wait=wait_exponential_jitter(multiplier=0.02, max=max_backoff, jitter=0.05),
                before_sleep=report,
            ):
                with attempt:
                    await step()

    return asyncio.create_task(run(), name=f"redpool:{name}")


async def cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel tasks and wait until they are done."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

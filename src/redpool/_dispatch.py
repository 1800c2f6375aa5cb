"""The caller's side of jobs: dispatch, stop and notify, and the replies they wait
for. Dispatches of one event-loop turn are admitted in one script call."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence

from ._batch import Batcher
from ._membership import Membership
from ._options import Options
from ._redis import retry_transient
from ._scripts import Scripts
from ._tasks import within
from ._validate import check_key, check_payload
from .errors import (
    DispatchTimeoutError,
    JobExistsError,
    JobNotFoundError,
    JobStartError,
    PoolError,
    PoolShuttingDownError,
    QueueFullError,
    StopTimeoutError,
)

_Admit = tuple[str, bytes, int, float]  # key, payload, request, deadline (monotonic)


def _ms_until(deadline: float) -> int:
    return max(0, int((deadline - time.monotonic()) * 1000))


class Dispatcher:
    def __init__(
        self, node_id: str, pool_name: str, scripts: Scripts, options: Options, members: Membership
    ) -> None:
        self._node = node_id
        self._pool = pool_name
        self._scripts = scripts
        self._opts = options
        self._members = members
        self._waiters: dict[int, asyncio.Future[tuple[str, str]]] = {}
        self._requests = itertools.count(1)
        self._admits: Batcher[_Admit, str] = Batcher(self._flush_admits)

    def on_reply(self, request: int, outcome: str, message: str) -> None:
        waiter = self._waiters.get(request)
        if waiter is not None and not waiter.done():
            waiter.set_result((outcome, message))

    def fail_all(self, reason: PoolError) -> None:
        """The node is closing: every caller still waiting gets ``reason``."""
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(reason)

    async def dispatch(self, key: str, payload: bytes) -> None:
        key = check_key(key)
        payload = check_payload(payload, self._opts.max_payload_size)
        timeout = self._opts.dispatch_timeout
        deadline = time.monotonic() + timeout
        request, reply = self._expect_reply()
        try:
            await self._admit(key, payload, request, deadline)
            try:
                outcome, message = await within(reply, max(deadline - time.monotonic(), 0))
            except asyncio.TimeoutError:
                result = await retry_transient(
                    lambda: self._scripts.withdraw(key, self._node, request),
                    time.monotonic() + self._opts.worker_ttl,
                    f"withdrawing job {key!r}",
                )
                if result == "started":
                    return
                raise DispatchTimeoutError(key, timeout) from None
            if outcome != "started":
                raise JobStartError(key, message)
        finally:
            self._waiters.pop(request, None)

    async def stop(self, key: str) -> None:
        key = check_key(key)
        timeout = self._opts.dispatch_timeout
        deadline = time.monotonic() + timeout
        request, reply = self._expect_reply()
        try:
            status = await retry_transient(
                lambda: self._scripts.stop(key, self._node, request), deadline, f"stopping {key!r}"
            )
            if status == "notfound":
                raise JobNotFoundError(key)
            if status == "pending":
                try:
                    await within(reply, max(deadline - time.monotonic(), 0))
                except asyncio.TimeoutError:
                    raise StopTimeoutError(key, timeout) from None
        finally:
            self._waiters.pop(request, None)

    async def notify(self, key: str, payload: bytes) -> None:
        key = check_key(key)
        payload = check_payload(payload, self._opts.max_payload_size)
        status = await retry_transient(
            lambda: self._scripts.notify(key, payload),
            time.monotonic() + self._opts.dispatch_timeout,
            f"notifying {key!r}",
        )
        if status == "notfound":
            raise JobNotFoundError(key)

    def _expect_reply(self) -> tuple[int, asyncio.Future[tuple[str, str]]]:
        request = next(self._requests)
        reply: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        self._waiters[request] = reply
        return request, reply

    async def _admit(self, key: str, payload: bytes, request: int, deadline: float) -> None:
        status = await retry_transient(
            lambda: self._admits.submit((key, payload, request, deadline)),
            deadline,
            f"dispatching {key!r}",
        )
        if status == "exists":
            raise JobExistsError(key)
        if status == "full":
            raise QueueFullError(
                f"{self._opts.max_queued_jobs} jobs are waiting to start "
                "(max_queued_jobs); add workers or retry later"
            )
        if status == "shutdown":
            raise PoolShuttingDownError(f"pool {self._pool!r} is shutting down")
        if status == "timeout":
            raise DispatchTimeoutError(key, self._opts.dispatch_timeout)

    async def _flush_admits(self, jobs: Sequence[_Admit]) -> list[str]:
        # A stale ring is reloaded and the batch tried again, while any of its callers waits.
        while any(_ms_until(deadline) > 0 for *_, deadline in jobs):
            ring = self._members.ring
            status, results = await self._scripts.admit(
                self._node,
                ring.version,
                self._opts.grace_ms,
                self._opts.max_queued_jobs,
                [
                    (key, payload, request, ring.route(key), _ms_until(deadline))
                    for key, payload, request, deadline in jobs
                ],
            )
            if status == "ok":
                return results
            if status == "shutdown":
                return ["shutdown"] * len(jobs)
            await self._members.refresh()
        return ["timeout"] * len(jobs)

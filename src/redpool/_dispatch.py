"""The caller's side of jobs: dispatch, stop and notify, and the replies they wait for.
Dispatches of one event-loop turn are admitted in one script call.

Every mutating call carries a request id, unique pool-wide as ``<node id>:<n>`` (node ids are
random per node, so also across restarts): a call retried after a lost reply is recognised by
its script and answers what the first call did instead of acting twice."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ._batch import Batcher
from ._membership import Membership
from ._options import MAX_PENDING_NOTES, Options
from ._redis import retry_transient
from ._scripts import Admission, Scripts, Withdrawal
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

MEMO_MARGIN = 1.0  # s: request memos outlive the caller's last retry by this much


@dataclass(frozen=True, slots=True)
class _Admit:
    key: str
    payload: bytes
    request: int
    deadline: float  # monotonic: when the dispatcher withdraws the job
    retry: bool  # an earlier admit of this request may have run


@dataclass(slots=True)
class _Waiter:
    """A caller waiting for a reply; a requeue pushes its deadline past the next attempt."""

    request: int
    reply: asyncio.Future[tuple[str, str]]
    deadline: float  # monotonic


def _ms_until(deadline: float) -> int:
    return max(0, int((deadline - time.monotonic()) * 1000))


def _timeout_reason(withdrawal: Withdrawal) -> str:
    """What the record said when the job was withdrawn, as advice."""
    if withdrawal.outcome == "gone":
        return "it had already left the pool (its start failed or it was stopped)"
    worker = withdrawal.worker
    if withdrawal.state == "queued":
        return (
            "no live worker took it; check that the pool has live workers with room (each "
            "capped worker was at its capacity)"
        )
    if withdrawal.state == "starting":
        return (
            f"worker {worker} took it, but its start() did not return in time; stop() runs "
            "once it returns"
        )
    if withdrawal.state == "stopping":
        return "a stop was requested before it started"
    return (
        f"worker {worker} did not report its start: its start() is still running (stop() "
        "follows it), or its node is overloaded or cut off from Redis"
    )


class Dispatcher:
    def __init__(
        self, node_id: str, pool_name: str, scripts: Scripts, options: Options, members: Membership
    ) -> None:
        self._node = node_id
        self._pool = pool_name
        self._scripts = scripts
        self._opts = options
        self._members = members
        self._waiters: dict[int, _Waiter] = {}
        self._requests = itertools.count(1)
        self._admits: Batcher[_Admit, tuple[str, int]] = Batcher(self._flush_admits)

    def on_reply(self, request: int, outcome: str, message: str) -> None:
        waiter = self._waiters.get(request)
        if waiter is None or waiter.reply.done():
            return
        if outcome == "requeued":
            # start() asked for a retry: the job waits ``message`` ms for its next attempt, and
            # the caller waits for that attempt as for the first.
            retry_at = time.monotonic() + int(message) / 1000 + self._opts.dispatch_timeout
            waiter.deadline = max(waiter.deadline, retry_at)
            return
        waiter.reply.set_result((outcome, message))

    def fail_all(self, reason: PoolError) -> None:
        """The node is closing: every caller still waiting gets ``reason``."""
        for waiter in self._waiters.values():
            if not waiter.reply.done():
                waiter.reply.set_exception(reason)

    async def dispatch(self, key: str, payload: bytes) -> None:
        key = check_key(key)
        payload = check_payload(payload, self._opts.max_payload_size)
        began = time.monotonic()
        waiter = self._expect_reply(began + self._opts.dispatch_timeout)
        try:
            await self._admit(key, payload, waiter)
            try:
                outcome, message = await self._wait(waiter)
            except asyncio.TimeoutError:
                call = next(self._requests)
                retry_for = self._opts.worker_ttl
                withdrawal = await retry_transient(
                    lambda: self._scripts.withdraw(
                        key, self._node, waiter.request, call, int((retry_for + MEMO_MARGIN) * 1000)
                    ),
                    time.monotonic() + retry_for,
                    f"withdrawing job {key!r}",
                )
                if withdrawal.outcome == "started":
                    return
                reason = _timeout_reason(withdrawal)
                raise DispatchTimeoutError(key, time.monotonic() - began, reason) from None
            if outcome != "started":
                raise JobStartError(key, message)
        finally:
            self._waiters.pop(waiter.request, None)

    async def stop(self, key: str) -> None:
        key = check_key(key)
        timeout = self._opts.dispatch_timeout
        waiter = self._expect_reply(time.monotonic() + timeout)
        keep_ms = int((timeout + MEMO_MARGIN) * 1000)
        try:
            status = await retry_transient(
                lambda: self._scripts.stop(key, self._node, waiter.request, keep_ms),
                waiter.deadline,
                f"stopping {key!r}",
            )
            if status == "notfound":
                raise JobNotFoundError(key)
            if status == "pending":
                try:
                    await self._wait(waiter)
                except asyncio.TimeoutError:
                    raise StopTimeoutError(key, timeout) from None
        finally:
            self._waiters.pop(waiter.request, None)

    async def notify(self, key: str, payload: bytes) -> None:
        key = check_key(key)
        payload = check_payload(payload, self._opts.max_payload_size)
        request = next(self._requests)
        timeout = self._opts.dispatch_timeout
        keep_ms = int((timeout + MEMO_MARGIN) * 1000)
        status, waiting = await retry_transient(
            lambda: self._scripts.notify(
                key, payload, self._node, request, keep_ms, MAX_PENDING_NOTES
            ),
            time.monotonic() + timeout,
            f"notifying {key!r}",
        )
        if status == "notfound":
            raise JobNotFoundError(key)
        if status == "full":
            raise QueueFullError(
                f"{waiting} notifications already wait for the owner of job {key!r} to take "
                f"them (at most {MAX_PENDING_NOTES} per job); retry later"
            )

    def _expect_reply(self, deadline: float) -> _Waiter:
        request = next(self._requests)
        reply: asyncio.Future[tuple[str, str]] = asyncio.get_running_loop().create_future()
        waiter = self._waiters[request] = _Waiter(request, reply, deadline)
        return waiter

    async def _wait(self, waiter: _Waiter) -> tuple[str, str]:
        """The reply, once it comes before the waiter's (possibly extended) deadline; raises
        asyncio.TimeoutError otherwise. The reply future is awaited itself (asyncio.wait would
        cost two loop turns more per call); a timer fails it at the deadline, or sets itself
        again when a requeue has pushed the deadline."""
        loop = asyncio.get_running_loop()
        timer: asyncio.TimerHandle | None = None

        def expire() -> None:
            nonlocal timer
            remaining = waiter.deadline - time.monotonic()
            if remaining > 0:
                timer = loop.call_later(remaining, expire)
            elif not waiter.reply.done():
                waiter.reply.set_exception(asyncio.TimeoutError())

        expire()
        try:
            return await waiter.reply
        finally:
            if timer is not None:
                timer.cancel()

    async def _admit(self, key: str, payload: bytes, waiter: _Waiter) -> None:
        tries = 0

        def submit() -> asyncio.Future[tuple[str, int]]:
            nonlocal tries
            tries += 1
            admit = _Admit(key, payload, waiter.request, waiter.deadline, retry=tries > 1)
            return self._admits.submit(admit)

        status, backlog = await retry_transient(submit, waiter.deadline, f"dispatching {key!r}")
        if status == "exists":
            raise JobExistsError(key)
        if status == "full":
            raise QueueFullError(
                f"pool {self._pool!r} has no live worker with room, and {backlog} jobs already "
                f"wait for one (max_queued_jobs={self._opts.max_queued_jobs}); add workers, "
                "raise their capacity, or retry later"
            )
        if status == "shutdown":
            raise PoolShuttingDownError(f"pool {self._pool!r} is shutting down")
        if status == "timeout":
            raise DispatchTimeoutError(
                key,
                self._opts.dispatch_timeout,
                "the pool's membership kept changing, so it could not be admitted",
            )

    async def _flush_admits(self, jobs: Sequence[_Admit]) -> list[tuple[str, int]]:
        # A stale ring is reloaded and the batch tried again, while any of its callers waits.
        while any(_ms_until(job.deadline) > 0 for job in jobs):
            ring = self._members.ring
            admitted = await self._scripts.admit(
                self._node,
                ring,
                self._opts.load_epsilon,
                self._opts.grace_ms,
                self._opts.max_queued_jobs,
                [
                    Admission(
                        job.key,
                        job.payload,
                        job.request,
                        ring.candidates(job.key),
                        _ms_until(job.deadline),
                        job.retry,
                    )
                    for job in jobs
                ],
            )
            if admitted.status == "ok":
                return [(status, admitted.backlog) for status in admitted.results]
            if admitted.status == "shutdown":
                return [("shutdown", 0)] * len(jobs)
            await self._members.refresh()
        return [("timeout", 0)] * len(jobs)

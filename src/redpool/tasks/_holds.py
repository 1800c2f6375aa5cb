"""Holds: ``async with run.hold(key)`` keeps every job of ``key`` from starting (``locked``)
until the block ends, or the holding run does (any outcome, its cancel, its worker's death:
lua/_tasks_holds.lua releases in the step that ends the run). A key whose run is on a worker,
or that another run holds, is waited for; a wait that would close a cycle raises
``HoldCycleError`` (found by lua/task_hold.lua)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from structlog.typing import FilteringBoundLogger

from .._redis import retry_transient
from ..errors import HoldCycleError, InvalidArgumentError, WaitTimeoutError
from ._scripts import TaskScripts

T = TypeVar("T")

RECHECK = 1.0  # a waiter whose 'free' message was lost asks again this often
CALL_DEADLINE = 10.0  # a hold or release call retried this long through an outage


class HoldWaits:
    """The waits of a node's runs for keys to come free, woken by the ``['free', key]``
    messages of its tasks inbox."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}

    def waiter(self, key: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, set()).add(future)
        return future

    def forget(self, key: str, future: asyncio.Future[None]) -> None:
        waiting = self._waiting.get(key)
        if waiting is not None:
            waiting.discard(future)
            if not waiting:
                del self._waiting[key]

    def wake(self, key: str) -> None:
        for future in self._waiting.get(key, ()):
            if not future.done():
                future.set_result(None)


class RunHolds:
    """The holds of one run: taken one at a time (the record names one key it waits for)."""

    def __init__(
        self,
        waits: HoldWaits,
        scripts: TaskScripts,
        worker_id: str,
        key: str,
        epoch: int,
        log: FilteringBoundLogger,
    ) -> None:
        self._waits = waits
        self._scripts = scripts
        self._worker_id = worker_id
        self._key = key
        self._epoch = epoch
        self._log = log
        self._held: set[str] = set()
        self._lock = asyncio.Lock()
        self.waiting = False  # a wait for a hold is not a stall

    async def acquire(self, target: str, timeout: float | None) -> None:
        if target in self._held:
            raise InvalidArgumentError(f"this run holds {target!r} already")
        async with self._lock:
            self.waiting = True
            try:
                await self._wait_for(target, timeout)
            except BaseException:
                await self.release(target)  # ends the wait (wf), or a hold a lost reply hid
                raise
            finally:
                self.waiting = False
            self._held.add(target)

    async def _wait_for(self, target: str, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            woken = self._waits.waiter(target)  # before asking: a wake cannot slip past
            try:
                outcome, keys = await self._call(
                    lambda: self._scripts.hold(
                        self._worker_id, self._key, self._epoch, target, self._waits.node_id
                    )
                )
                if outcome == "ok":
                    return
                if outcome in ("cycle", "deep"):
                    raise HoldCycleError(self._key, target, keys, too_deep=outcome == "deep")
                if outcome == "unowned":
                    raise asyncio.CancelledError("the run is not this worker's any more")
                left = RECHECK if deadline is None else min(RECHECK, deadline - time.monotonic())
                if left <= 0:
                    raise WaitTimeoutError(f"{target!r} was not free to hold within {timeout:g}s")
                await asyncio.wait([woken], timeout=left)
            finally:
                self._waits.forget(target, woken)

    async def release(self, target: str) -> None:
        """Give up the hold (or the wait) on ``target``; never raises: should the call fail,
        the run's end releases it."""
        self._held.discard(target)
        try:
            await self._call(
                lambda: self._scripts.release(self._worker_id, self._key, self._epoch, target)
            )
        except Exception as exc:
            self._log.warning("could not release a hold", held=target, error=repr(exc))

    async def _call(self, fn: Callable[[], Awaitable[T]]) -> T:
        return await retry_transient(
            fn, time.monotonic() + CALL_DEADLINE, f"holding for {self._key!r}"
        )

"""``RunContext``: what a running task knows about its run, and the calls it makes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from structlog.typing import FilteringBoundLogger

from ..errors import InvalidArgumentError, RunStoppedError
from ._scripts import Claim, TaskScripts


class RunContext:
    """The first argument of every task: the run's key, attempt and epoch (the fencing token
    to pass to downstream writes), its labels and tenant, progress and ownership."""

    def __init__(
        self,
        claim: Claim,
        worker_id: str,
        scripts: TaskScripts,
        owned: Callable[[], bool],
        log: FilteringBoundLogger,
    ) -> None:
        self.key = claim.key
        self.generation = claim.generation
        self.attempt = claim.attempt
        self.interrupts = claim.interrupts
        self.epoch = claim.epoch
        self.tenant = claim.tenant
        self.labels: Mapping[str, str] = dict(claim.labels)
        self.worker_id = worker_id
        self.log = log.bind(key=claim.key, attempt=claim.attempt, epoch=claim.epoch)
        self._scripts = scripts
        self._owned = owned
        # What stall_timeout measures (the worker's own clock: only the owner judges a
        # stall): the last progress() or checkpoint() call; ``ended`` once the code stopped.
        self.moved_at = time.monotonic()
        self.ended = False

    def is_owned(self) -> bool:
        """True while this run is still this worker's: its node's lease holds and no other
        run of the key may have started."""
        return self._owned()

    async def progress(
        self, completed: float, total: float | None = None, details: str | None = None
    ) -> None:
        """Record progress (visible in ``info()``); ``completed`` may not exceed ``total``
        (InvalidArgumentError). Also a sign of life for ``stall_timeout``. Once the run has
        ended, RunStoppedError: its progress is final (a leaked context must not write)."""
        if self.ended:
            raise RunStoppedError("ended")
        if total is not None and not completed <= total:
            raise InvalidArgumentError(f"progress {completed} exceeds its total {total}")
        if completed != completed:  # NaN
            raise InvalidArgumentError("progress completed must be a number, got NaN")
        self.moved_at = time.monotonic()
        verdict = await self._scripts.progress(
            self.worker_id,
            self.key,
            self.epoch,
            completed,
            -1 if total is None else total,
            details or "",
        )
        if verdict == "unowned":
            raise asyncio.CancelledError("the run is not this worker's any more")
        if verdict == "invalid":
            raise InvalidArgumentError(f"progress {completed} exceeds its total {total}")

    async def checkpoint(self) -> None:
        """A point where the run may be stopped (cancel, timeout), and a sign of life for
        ``stall_timeout``: async runs are stopped by cancellation at any await, so this only
        yields to the loop (sync tasks get ``SyncRunContext``, whose checkpoint raises)."""
        self.moved_at = time.monotonic()
        await asyncio.sleep(0)


class SyncRunContext(RunContext):
    """What a plain ``def`` task (run in a thread) gets: ``checkpoint()`` and ``progress()``
    are plain calls, and raise ``RunStoppedError`` once the run is canceled or timed out (the
    run also gets that error as an async exception: cooperative, see the README)."""

    def __init__(
        self,
        claim: Claim,
        worker_id: str,
        scripts: TaskScripts,
        owned: Callable[[], bool],
        log: FilteringBoundLogger,
        stopped: Callable[[], str],
    ) -> None:
        super().__init__(claim, worker_id, scripts, owned, log)
        self._loop = asyncio.get_running_loop()
        self._stopped = stopped

    def checkpoint(self) -> None:  # type: ignore[override]  # a sync task's own form
        """A point where the run stops if it was canceled or timed out; a sign of life."""
        self.moved_at = time.monotonic()
        reason = self._stopped()
        if reason:
            raise RunStoppedError(reason)

    def progress(  # type: ignore[override]  # a sync task's own form
        self, completed: float, total: float | None = None, details: str | None = None
    ) -> None:
        """Record progress (on the worker's loop, waiting for it); also a checkpoint."""
        self.checkpoint()
        write = super().progress(completed, total, details)
        asyncio.run_coroutine_threadsafe(write, self._loop).result()

"""``RunContext``: what a running task knows about its run, and the calls it makes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

from structlog.typing import FilteringBoundLogger

from .._options import MIB
from .._validate import check_key
from ..errors import InvalidArgumentError, RunStoppedError
from ._codec import decode, encode
from ._control import RunControl
from ._holds import RunHolds
from ._scripts import Claim, TaskScripts
from ._status import Progress, decode_progress

_NO_STATE: Any = object()


class RunContext:
    """The first argument of every task: the run's key, attempt and epoch (the fencing token
    to pass to downstream writes), its labels and tenant, progress and ownership.
    ``resumed``: the job was suspended and resumed; ``checkpoint_state``: the generation's
    last ``checkpoint(state)`` (None if none); ``last_progress``: its last progress.
    ``scheduled_for``: a schedule's run, the due time of its occurrence (the grid point,
    jitter not counted; a woken run's, when it was woken): the identity of the occurrence,
    the same for every attempt of it (an idempotency key); None for a plain job."""

    def __init__(
        self,
        claim: Claim,
        worker_id: str,
        scripts: TaskScripts,
        owned: Callable[[], bool],
        log: FilteringBoundLogger,
        control: RunControl,
        holds: RunHolds | None = None,
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
        self.resumed = claim.resumed
        due = (claim.schedule or {}).get("od")
        self.scheduled_for: datetime | None = (
            None if due is None else datetime.fromtimestamp(int(due) / 1000, timezone.utc)
        )
        self.checkpoint_state: Any = decode(claim.checkpoint_state)
        self.last_progress: Progress | None = decode_progress(list(claim.progress))
        self._scripts = scripts
        self._owned = owned
        self._holds = holds
        # What stall_timeout measures (the worker's own clock: only the owner judges a
        # stall): the last progress() or checkpoint() call; ``ended`` once the code stopped.
        self.moved_at = time.monotonic()
        self.ended = False
        self._control = control

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

    @asynccontextmanager
    async def hold(self, key: str, *, timeout: float | None = None) -> AsyncIterator[None]:
        """While the block runs, no job of ``key`` starts: a scheduled or queued one (or one
        submitted meanwhile) is ``locked``; released when the block ends, or with this run.
        A job of ``key`` on a worker, or a key another run holds, is waited for (up to
        ``timeout`` seconds: WaitTimeoutError); a wait that would close a cycle of holds
        raises HoldCycleError. Async tasks only."""
        holds = self._holds
        if holds is None:
            raise InvalidArgumentError("run.hold() is for async tasks")
        key = check_key(key)
        try:
            await holds.acquire(key, timeout)
        finally:
            self.moved_at = time.monotonic()  # the wait was no stall
        try:
            yield
        finally:
            await holds.release(key)

    async def checkpoint(self, state: Any = _NO_STATE) -> None:
        """A point where the run may pause or be suspended, and a sign of life for
        ``stall_timeout``. ``state`` (msgpack values) is stored first, in Redis: a resumed
        run (or a rerun of the job) gets it back as ``checkpoint_state``. A pause is
        acknowledged here and the run waits here until resumed; a suspend stops the run here
        (CancelledError, as a cancel or a timeout at any await). Without a request or state
        it only yields to the loop."""
        self.moved_at = time.monotonic()
        await self._control.settle(_state(state))
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
        control: RunControl,
        stopped: Callable[[], str],
    ) -> None:
        super().__init__(claim, worker_id, scripts, owned, log, control)
        self._loop = asyncio.get_running_loop()
        self._stopped = stopped

    def checkpoint(self, state: Any = _NO_STATE) -> None:  # type: ignore[override]
        """A point where the run stops if it was canceled, timed out or suspended, and
        waits while paused (a sync task's own form of ``RunContext.checkpoint``); a sign of
        life."""
        self.moved_at = time.monotonic()
        encoded = _state(state)
        if not self._stopped() and (encoded is not None or self._control.requested):
            settle = self._control.settle(encoded)
            asyncio.run_coroutine_threadsafe(settle, self._loop).result()
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


def _state(state: Any) -> bytes | None:
    if state is _NO_STATE:
        return None
    encoded = encode(state, "checkpoint state")
    if len(encoded) > MIB:  # stored in Redis and read back by every resumed run
        raise InvalidArgumentError(
            f"checkpoint state of {len(encoded)} bytes exceeds 1 MiB; keep large state "
            "elsewhere and checkpoint a reference to it"
        )
    return encoded

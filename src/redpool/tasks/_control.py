"""Pause and suspend of a run on its worker: the requests its owner was told of (inbox
messages, and the upkeep again while the record says so), what the run does at its
checkpoints (store its state, acknowledge a pause and wait there until resumed, stop for a
suspend), and its timeout clock, which stops while the run is paused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from ._scripts import TaskScripts

# A paused run asks Redis this often whether it was resumed (or canceled, or suspended)
# meanwhile: a lost message delays the run by at most this much.
RECHECK = 1.0


class Deadline:
    """A run's timeout as a timer that stops while the run is paused and then goes on."""

    def __init__(self, seconds: float | None, fire: Callable[[], None]) -> None:
        self._left = seconds
        self._fire = fire
        self._since = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.resume()

    def pause(self) -> None:
        if self._timer is not None and self._left is not None:
            self._timer.cancel()
            self._timer = None
            self._left -= time.monotonic() - self._since

    def resume(self) -> None:
        if self._timer is None and self._left is not None:
            self._since = time.monotonic()
            self._timer = asyncio.get_running_loop().call_later(max(0.0, self._left), self._fire)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._left = None, None


class RunControl:
    """The pause and suspend requests of one run (by ``(worker, epoch)``), and its side of
    them at ``run.checkpoint()``. ``stop(reason)`` stops the run as the runner does;
    ``stopped()`` is the reason it is being stopped ('' while it is not)."""

    def __init__(
        self,
        key: str,
        epoch: int,
        worker_id: str,
        scripts: TaskScripts,
        stop: Callable[[str], None],
        stopped: Callable[[], str],
    ) -> None:
        self._key = key
        self._epoch = epoch
        self._worker_id = worker_id
        self._scripts = scripts
        self._stop = stop
        self._stopped = stopped
        self.deadline = Deadline(None, lambda: None)
        self._pause = False
        self._suspend = False
        self._resumed = False
        self._waiting = False
        self._wake = asyncio.Event()

    def request(self, action: str) -> None:
        """The owner was told to 'pause', 'resume' or 'suspend' the run."""
        if action == "pause":
            self._pause = True
        elif action == "resume":
            self._pause, self._resumed = False, True
        elif action == "suspend":
            self._suspend = True
        self._wake.set()

    @property
    def paused(self) -> bool:
        """The run waits at a checkpoint (not a stall)."""
        return self._waiting

    @property
    def requested(self) -> bool:
        """A pause or suspend waits for the run's next checkpoint."""
        return self._pause or self._suspend

    def wake(self) -> None:
        """The run is being stopped: a paused sync run stops waiting."""
        self._wake.set()

    async def settle(self, state: bytes | None) -> None:
        """The run's checkpoint: store ``state``, then stop for a suspend, or acknowledge a
        pause and wait here until resumed. A stop goes through ``stop`` (an async run is
        cancelled at its next await; a sync one raises at its checkpoint)."""
        if state is None and not self.requested:
            return
        if self._suspend:
            if state is not None:
                await self._ask(state, ack=False)
            self._stop("suspended")
            return
        self._resumed = False
        self._obey(await self._ask(state, ack=True))

    def _obey(self, status: str) -> None:
        """Act on the status the record has at a checkpoint (a paused run waits outside)."""
        self._pause = False
        if status == "suspending":
            self._suspend = True
            self._stop("suspended")
        elif status == "canceling":
            self._stop("canceled")
        elif status == "unowned":
            self._stop("interrupted")

    async def _ask(self, state: bytes | None, ack: bool) -> str:
        status = await self._scripts.checkpoint(self._worker_id, self._key, self._epoch, state, ack)
        if status == "paused":
            await self._paused()
            return "running"
        return status

    async def _paused(self) -> None:
        """Wait until resumed (its message, or the record when the message was lost), with
        the timeout clock stopped; return early once the run is to stop."""
        self.deadline.pause()
        self._waiting = True
        try:
            while not self._resumed and not self._stopped():
                if self._suspend:
                    self._stop("suspended")
                    return
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), RECHECK)
                except TimeoutError:
                    status = await self._scripts.checkpoint(
                        self._worker_id, self._key, self._epoch, None, True
                    )
                    if status != "paused":
                        self._obey(status)
                        return
        finally:
            self._waiting = False
            self.deadline.resume()

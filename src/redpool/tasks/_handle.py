"""``JobHandle``: a task job seen from any node (client-only ones too): its status, info,
result and runs, waiting for it, canceling, pausing, suspending and resuming it."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Generic, TypeVar

from .._codec import CorruptEntryError
from .._redis import awaitable, public
from ..errors import (
    InvalidArgumentError,
    InvalidTransitionError,
    JobCanceledError,
    JobFailedError,
    JobNotFoundError,
    JobSkippedError,
    JobTimedOutError,
    JobUnsuccessfulError,
    NotSuspendableError,
    PauseTimeoutError,
    PoolError,
    WaitTimeoutError,
)
from ._codec import decode
from ._runtime import TaskLayer
from ._scripts import Outcome
from ._status import (
    TERMINAL,
    JobInfo,
    JobMetrics,
    RunInfo,
    Status,
    decode_info,
    decode_metrics,
    decode_run,
)

R = TypeVar("R")

# A waiter whose 'done' reply is lost (its inbox was recreated, say) looks again this often.
RECHECK = 1.0

_ERRORS: dict[Status, type[JobUnsuccessfulError]] = {
    Status.FAILED: JobFailedError,
    Status.TIMED_OUT: JobTimedOutError,
    Status.CANCELED: JobCanceledError,
    Status.SKIPPED: JobSkippedError,
}


class JobHandle(Generic[R]):
    """A task job by key, pinned to one generation of it (``submit`` returns such handles;
    ``node.job(key)`` follows the key's current one: ``generation`` None). ``existing`` is
    True when submit returned an earlier job (an idempotency replay or
    ``if_active="return"``)."""

    def __init__(
        self,
        layer: TaskLayer,
        key: str,
        result_type: Any = None,
        existing: bool = False,
        generation: int | None = None,
    ) -> None:
        self.key = key
        self.generation = generation
        self.existing = existing
        self._layer = layer
        self._boundary = layer.boundary
        self._result_type = result_type

    def __repr__(self) -> str:
        return f"<redpool.JobHandle {self.key!r}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, JobHandle)
            and other.key == self.key
            and other.generation == self.generation
        )

    def __hash__(self) -> int:
        return hash((self.key, self.generation))

    @public
    async def status(self) -> Status:
        return (await self.info()).status

    @public
    async def info(self) -> JobInfo:
        """The generation's state; one still waiting in its key's FIFO is queued; one a
        later generation replaced is described by its last run."""
        layer = self._layer
        found = await layer.call(
            f"info of {self.key!r}", lambda: layer.scripts.info(self.key, self.generation or 0)
        )
        if found is None:
            raise JobNotFoundError(self.key)
        try:
            return decode_info(self.key, found.record, found.error, found.progress)
        except CorruptEntryError as exc:
            raise PoolError(f"task job {self.key!r} has a corrupt record: {exc}") from exc

    @public
    async def wait(self, timeout: float | None = None) -> JobInfo:
        """Wait until the job ended (TimeoutError after ``timeout`` seconds: the job is left
        alone) and return its info. The finishing script replies to this node's tasks inbox;
        a reply lost on the way is caught by a look every RECHECK seconds."""
        await self._await_end(timeout)
        return await self.info()

    @public
    async def result(self, timeout: float | None = None) -> R:
        """The task's return value; JobFailedError, JobTimedOutError, JobCanceledError or
        JobSkippedError (all JobUnsuccessfulError, with ``.info``) when it has none."""
        status, value = await self._await_end(timeout)
        if status == Status.ENDED:  # a schedule's end (window or max_runs) has no value
            return None  # type: ignore[return-value]
        if status == Status.SUCCEEDED:
            if value is None:  # a later generation of the key replaced its result
                raise JobNotFoundError(self.key)
            return decode(value, self._result_type)  # type: ignore[no-any-return]
        raise _ERRORS[status](await self.info())

    @public
    async def cancel(self, wait: bool = True, timeout: float | None = None) -> Status:
        """Cancel the job: a scheduled or queued one (or one waiting in its key's FIFO) at
        once; a running one stops at its next await. With ``wait``, return once it ended (its
        code stopped): the generation it canceled, also through ``node.job(key)`` when the
        key's FIFO starts the next one meanwhile."""
        layer = self._layer
        request, ttl_ms = layer.memo()  # its retries answer what the first call did
        status, generation = await layer.call(
            f"canceling {self.key!r}",
            lambda: layer.scripts.cancel(self.key, self.generation or 0, request, ttl_ms),
        )
        if status == "missing":
            raise JobNotFoundError(self.key)
        if not wait or Status(status) in TERMINAL:
            return Status(status)
        canceled: JobHandle[R] = JobHandle(layer, self.key, self._result_type, False, generation)
        return (await canceled.wait(timeout)).status

    @public
    async def pause(self, ack_timeout: float = 1.0) -> Status:
        """Pause the running job at its next ``run.checkpoint()``, where it waits until
        ``resume()``, keeping its slot, lease, epoch and memory (its timeout clock stops
        meanwhile). Returns PAUSED once the run acknowledged; PauseTimeoutError if it did
        not within ``ack_timeout`` seconds (the pause is withdrawn: it runs on);
        InvalidTransitionError (``.status``) when the job is not running."""
        if isinstance(ack_timeout, bool) or not isinstance(ack_timeout, (int, float)):
            raise InvalidArgumentError(f"ack_timeout must be seconds > 0, got {ack_timeout!r}")
        if not ack_timeout > 0:
            raise InvalidArgumentError(f"ack_timeout must be seconds > 0, got {ack_timeout!r}")
        status = await self._control("pause", {Status.PAUSING}, ack_timeout)
        if status == Status.PAUSING:  # not acknowledged in time: withdrawn, unless just now
            status = await self._control("withdraw", set(), None)
            if status != Status.PAUSED:
                raise PauseTimeoutError(self.key, ack_timeout)
        if status != Status.PAUSED:  # it ended, or was canceled or suspended meanwhile
            raise InvalidTransitionError(self.key, status.value, "pause")
        return status

    @public
    async def resume(self) -> Status:
        """Continue a paused job where it waits (or withdraw a pause not yet acknowledged),
        or place a suspended one again (it runs anew, possibly on another worker, with
        ``run.resumed`` and its ``run.checkpoint_state``); a job being suspended is placed
        again once suspended. No-op for a scheduled, queued or running job. Returns the
        status after the call; InvalidTransitionError once the job is canceling or over."""
        return await self._control("resume", set(), None)

    @public
    async def suspend(self, wait: bool = True, timeout: float | None = None) -> Status:
        """Suspend the job: a scheduled or queued one (or one not yet started) at once; a
        running, pausing or paused one stops at its next ``run.checkpoint()`` and gives its
        slot back (its task must be declared ``suspendable=True``, else
        NotSuspendableError), keeping its checkpoint state and last progress. A cancel wins
        over a suspend. With ``wait``, return once it stopped: SUSPENDED (or how it ended
        instead); WaitTimeoutError after ``timeout`` seconds (the suspend stays asked)."""
        settling = {Status.SUSPENDING, Status.CANCELING} if wait else set()
        status = await self._control("suspend", settling, timeout)
        if status in settling:
            raise WaitTimeoutError(
                f"task job {self.key!r} did not stop within {timeout:g}s to suspend; it will "
                "be suspended at its next checkpoint"
            )
        return status

    async def _control(self, action: str, settling: set[Status], timeout: float | None) -> Status:
        """Run ``action`` (lua/task_control.lua) and wait while the status is in
        ``settling``, up to ``timeout`` seconds (None: no limit): each status change wakes
        the wait through this node's tasks inbox; a lost message, a look every RECHECK."""
        layer = self._layer
        await layer.start()
        request, ttl_ms = layer.memo()  # its retries answer what the first call did
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter, future = layer.waiter()
        try:
            status = await self._act(action, request, ttl_ms, waiter)
            while status in settling:
                left = RECHECK if deadline is None else min(RECHECK, deadline - time.monotonic())
                if left <= 0:
                    break
                await asyncio.wait([future], timeout=left)
                future.cancel()
                waiter, future = layer.waiter()
                status = await self._act("watch", "", 0, waiter)
        finally:
            future.cancel()
        return status

    async def _act(self, action: str, request: str, ttl_ms: int, waiter: int) -> Status:
        """One task_control call: the status it answered, or the error it means."""
        layer = self._layer
        outcome, status = await layer.call(
            f"{action} of {self.key!r}",
            lambda: layer.scripts.control(
                self.key, self.generation or 0, action, request, ttl_ms, layer.node_id, waiter
            ),
        )
        if outcome == "missing":
            raise JobNotFoundError(self.key)
        if outcome == "notsuspendable":
            raise NotSuspendableError(self.key, status)
        if not status:  # the generation is over (a later one replaced it)
            status = (await self.info()).status.value
        if outcome == "invalid" and action != "watch":
            raise InvalidTransitionError(self.key, status, action)
        return Status(status)

    @public
    async def delete(self) -> None:
        """Delete the job with its result, history and counters: a finished one, or a
        scheduled or queued one (canceled first). InvalidTransitionError while it is on a
        worker: cancel it first."""
        layer = self._layer
        outcome, status = await layer.call(
            f"deleting {self.key!r}", lambda: layer.scripts.delete(self.key)
        )
        if outcome == "missing":
            raise JobNotFoundError(self.key)
        if outcome == "invalid":
            raise InvalidTransitionError(self.key, status, "delete")

    @public
    async def metrics(self) -> JobMetrics:
        """The key's run counters (all its generations, until it is purged)."""
        layer = self._layer
        fields = await layer.call(
            f"metrics of {self.key!r}",
            lambda: awaitable(layer.client.hgetall(layer.keys.stats(self.key))),
        )
        return decode_metrics(fields)

    @public
    async def runs(self, limit: int = 20) -> list[RunInfo]:
        """The job's last finished runs (up to 20 are kept), newest first (interrupted ones
        included)."""
        layer = self._layer
        if limit < 1:
            return []
        entries = await layer.call(
            f"runs of {self.key!r}",
            lambda: awaitable(layer.client.lrange(layer.keys.runs(self.key), 0, limit - 1)),
        )
        out: list[RunInfo] = []
        for entry in entries:
            try:
                out.append(decode_run(entry))
            except CorruptEntryError:
                self._layer.log.warning("corrupt run entry skipped", key=self.key)
        return out

    async def _await_end(self, timeout: float | None) -> tuple[Status, bytes | None]:
        """How the generation ended, and its result or error (None: no longer kept)."""
        layer = self._layer
        await layer.start()
        wanted = self.generation or 0
        deadline = None if timeout is None else time.monotonic() + timeout
        request, future = layer.waiter()
        try:
            outcome = await self._look(request, wanted)
            while outcome.state == "waiting":
                wanted = wanted or outcome.generation  # a key's handle waits for this one
                left = RECHECK if deadline is None else min(RECHECK, deadline - time.monotonic())
                if left <= 0:
                    raise WaitTimeoutError(
                        f"task job {self.key!r} did not end within {timeout:g}s; it goes on"
                    )
                await asyncio.wait([future], timeout=left)
                if future.done():
                    reply = future.result()
                    if reply.value is not None and reply.generation == wanted:
                        return Status(reply.status), reply.value
                    request, future = layer.waiter()  # look, and wait again if not the end
                    outcome = await self._look(request, wanted)
                else:
                    outcome = await self._look(0, wanted)
        finally:
            future.cancel()
        if outcome.state == "missing":
            raise JobNotFoundError(self.key)
        if outcome.state == "corrupt":
            raise PoolError(f"task job {self.key!r} has a corrupt record; delete it by hand")
        if outcome.state == "superseded":
            return (await JobHandle(layer, self.key, None, False, wanted).info()).status, None
        return Status(outcome.status), outcome.value

    async def _look(self, request: int, generation: int) -> Outcome:
        layer = self._layer
        return await layer.call(
            f"waiting for {self.key!r}",
            lambda: layer.scripts.wait(self.key, layer.node_id, request, generation),
        )

"""``JobHandle``: a task job seen from any node (client-only ones too): its status, info,
result and runs, waiting for it and canceling it."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Generic, TypeVar

from .._codec import CorruptEntryError
from .._redis import awaitable, public
from ..errors import (
    InvalidTransitionError,
    JobCanceledError,
    JobFailedError,
    JobNotFoundError,
    JobSkippedError,
    JobTimedOutError,
    JobUnsuccessfulError,
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
        if status == Status.SUCCEEDED:
            if value is None:  # a later generation of the key replaced its result
                raise JobNotFoundError(self.key)
            return decode(value, self._result_type)  # type: ignore[no-any-return]
        raise _ERRORS[status](await self.info())

    @public
    async def cancel(self, wait: bool = True, timeout: float | None = None) -> Status:
        """Cancel the job: a scheduled or queued one (or one waiting in its key's FIFO) at
        once; a running one stops at its next await. With ``wait``, return once it ended (its
        code stopped)."""
        layer = self._layer
        request, ttl_ms = layer.memo()  # its retries answer what the first call did
        status = await layer.call(
            f"canceling {self.key!r}",
            lambda: layer.scripts.cancel(self.key, self.generation or 0, request, ttl_ms),
        )
        if status == "missing":
            raise JobNotFoundError(self.key)
        if not wait or Status(status) in TERMINAL:
            return Status(status)
        return (await self.wait(timeout)).status

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
        """The job's last finished runs, newest first (interrupted ones included)."""
        layer = self._layer
        entries = await layer.call(
            f"runs of {self.key!r}",
            lambda: layer.client.xrevrange(layer.keys.runs(self.key), count=limit),
        )
        out: list[RunInfo] = []
        for _, fields in entries:
            try:
                out.append(decode_run(fields[b"r"]))
            except (CorruptEntryError, KeyError):
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

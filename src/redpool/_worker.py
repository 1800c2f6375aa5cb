"""A worker: runs its handler's start()/stop() for the jobs it owns, one operation per key at a
time and in the order they were asked for."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from structlog.typing import FilteringBoundLogger

from ._tasks import call_maybe_async
from ._types import Job, JobHandler, NotificationHandler
from .errors import PoolError, Requeue


class WorkerHost(Protocol):
    """What a worker needs from its node."""

    log: FilteringBoundLogger

    def lease_valid(self) -> bool: ...

    async def report_started(
        self, key: str, worker: str, epoch: int, outcome: str, message: str
    ) -> str: ...

    async def report_stopped(self, key: str, worker: str, epoch: int) -> None: ...

    async def take_notes(self, key: str, worker: str, epoch: int) -> list[bytes]: ...


@dataclass
class _Local:
    job: Job
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    running: bool = False
    gone: bool = False


class Worker:
    """A worker of this node; created by :meth:`redpool.Node.add_worker`."""

    def __init__(
        self, worker_id: str, created_at: datetime, handler: JobHandler, host: WorkerHost
    ) -> None:
        self.id = worker_id
        self.created_at = created_at
        self.handler = handler
        self._host = host
        self._jobs: dict[str, _Local] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False
        self._log = host.log.bind(worker=worker_id)

    def __repr__(self) -> str:
        return f"<redpool.Worker {self.id} jobs={len(self._jobs)}>"

    def jobs(self) -> list[Job]:
        """The jobs this worker runs or is starting."""
        return [local.job for local in self._jobs.values() if not local.gone]

    def is_stopped(self) -> bool:
        return self._stopped

    # -- used by the node's host (_host.Host) and its loops; private to the package ----------

    @property
    def _accepting(self) -> bool:
        """False once the worker is being removed; fencing is the node's (lease) business."""
        return not self._stopped

    def _local_epoch(self, key: str) -> int | None:
        local = self._jobs.get(key)
        return None if local is None or local.gone else local.job.epoch

    def _running_keys(self) -> list[tuple[str, int]]:
        return [(k, v.job.epoch) for k, v in self._jobs.items() if not v.gone]

    def _begin_start(self, job: Job) -> None:
        """Take a job: register it now (so stops and rebalances see it) and start it."""
        local = _Local(job)
        local.job = replace(job, _owned=lambda: not local.gone and self._host.lease_valid())
        self._jobs[job.key] = local
        self._spawn(self._start(local))

    def _begin_stop(self, key: str, epoch: int) -> None:
        """A stop was requested for the job at ``epoch``: stop it and report the key free."""

        async def stop() -> None:
            await self._stop_local(key, epoch, report=True)

        self._spawn(stop())

    def _notify(self, key: str, epoch: int) -> None:
        """Notifications wait for the job at ``epoch``: take and deliver them (after start()
        returned). If the job left this worker meanwhile, they wait for its next owner."""
        local = self._jobs.get(key)
        if local is not None and local.job.epoch == epoch:
            self._spawn(self._deliver_notes(local))

    async def _stop_local(self, key: str, epoch: int | None = None, report: bool = False) -> bool:
        """Stop a job here; True if stop() ran. ``report`` frees the key in Redis afterwards
        (also when nothing ran here, so a stop is never left waiting)."""
        local = self._jobs.get(key)
        if local is None or (epoch is not None and local.job.epoch != epoch):
            if report and epoch is not None:
                await self._host.report_stopped(key, self.id, epoch)
            return False
        async with local.lock:
            if local.gone:
                return False
            await self._stop_locked(local, report)
            return True

    async def _stop_all(self) -> None:
        """Stop every job here, without freeing keys (their records decide what comes next)."""
        await asyncio.gather(*(self._stop_local(key) for key in list(self._jobs)))

    def _rename(self, worker_id: str) -> None:
        """The worker rejoined the pool under a new id (its old one was declared dead)."""
        self.id = worker_id
        self._log = self._host.log.bind(worker=worker_id)

    def _retire(self) -> None:
        self._stopped = True

    # -- internals --------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forget(self, local: _Local) -> None:
        local.gone = True
        if self._jobs.get(local.job.key) is local:
            del self._jobs[local.job.key]

    async def _start(self, local: _Local) -> None:
        job = local.job
        async with local.lock:
            if local.gone:
                return
            if not self._host.lease_valid():
                self._forget(local)  # fenced before start(): its record has it delivered again
                return
            outcome, message = "ok", ""
            try:
                await call_maybe_async(self.handler.start, job)
            except Requeue:
                outcome = "requeue"
            except Exception as exc:
                outcome, message = "error", f"{type(exc).__name__}: {exc}"
                self._log.info("start failed", key=job.key, error=message)
            if outcome != "ok":
                self._forget(local)
            try:
                verdict = await self._host.report_started(
                    job.key, self.id, job.epoch, outcome, message
                )
            except PoolError as exc:
                # The record still says assigned or starting; the reconciler and the
                # dispatcher's timeout (withdraw) settle it from there.
                self._log.warning("could not report the start", key=job.key, error=str(exc))
                return
            if outcome != "ok":
                return
            if verdict in ("run", "notes"):
                local.running = True
                if verdict == "notes":
                    await self._deliver_notes_locked(local)
            else:
                await self._stop_locked(local, report=verdict == "stop")

    async def _stop_locked(self, local: _Local, report: bool) -> None:
        key = local.job.key
        try:
            await call_maybe_async(self.handler.stop, key)
        except Exception as exc:
            self._log.warning("stop() raised; the job counts as stopped", key=key, error=repr(exc))
        self._forget(local)
        if report:
            await self._host.report_stopped(key, self.id, local.job.epoch)

    async def _deliver_notes(self, local: _Local) -> None:
        async with local.lock:
            if not local.gone:
                await self._deliver_notes_locked(local)

    async def _deliver_notes_locked(self, local: _Local) -> None:
        key = local.job.key
        payloads = await self._host.take_notes(key, self.id, local.job.epoch)
        if payloads and not isinstance(self.handler, NotificationHandler):
            self._log.warning(
                "handler has no handle_notification; notifications dropped",
                key=key,
                count=len(payloads),
            )
            return
        for payload in payloads:
            try:
                await call_maybe_async(self.handler.handle_notification, key, payload)  # type: ignore[attr-defined]
            except Exception as exc:
                self._log.warning("handle_notification raised", key=key, error=repr(exc))

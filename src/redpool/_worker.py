"""A worker: runs its handler's start()/stop() for the jobs it owns, one operation per key at a
time and in the order they were asked for. No handler call can hold a key for good: start() is
bounded by ``start_timeout`` and stop() by ``worker_shutdown_ttl``."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from structlog.typing import FilteringBoundLogger

from ._options import Options
from ._scripts import requeue_message
from ._tasks import TaskSet, abandon, finish_within
from ._threads import Threads, call_maybe_async
from ._types import Job, JobHandler, NotificationHandler
from .errors import PoolError, Requeue


class WorkerHost(Protocol):
    """What a worker needs from its node."""

    log: FilteringBoundLogger

    def lease_valid(self) -> bool: ...

    def lease_valid_for(self) -> float: ...

    async def report_started(
        self, key: str, worker: str, epoch: int, outcome: str, message: str
    ) -> str: ...

    async def report_stopped(self, key: str, worker: str, epoch: int) -> None: ...

    async def take_notes(self, key: str, worker: str, epoch: int) -> list[bytes]: ...


@dataclass(frozen=True)
class HandlerThreads:
    """A node's threads for sync handler methods. stop() calls have threads of their own, so a
    fence or a stop never waits behind slow start() calls (notifications share the starts')."""

    starts: Threads
    stops: Threads

    @classmethod
    def sized(cls, size: int) -> HandlerThreads:
        return cls(Threads("start", size), Threads("stop", size))


class _NotOwned(Exception):
    """A sync start() that waited for a thread found the job no longer its own."""


@dataclass
class _Local:
    job: Job
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    running: bool = False
    gone: bool = False
    stopping: bool = False  # a stop was asked for: the job's work must end, whatever the lease


class Worker:
    """A worker of this node; created by :meth:`redpool.Node.add_worker`."""

    def __init__(
        self,
        worker_id: str,
        created_at: datetime,
        handler: JobHandler,
        host: WorkerHost,
        options: Options,
        threads: HandlerThreads,
    ) -> None:
        self.id = worker_id
        self.created_at = created_at
        self.handler = handler
        self.capacity: int | None = None
        """Most jobs at once (``add_worker(capacity=)``); None: no limit."""
        self._host = host
        self._opts = options
        self._threads = threads
        self._jobs: dict[str, _Local] = {}
        self._tasks = TaskSet(host.log)
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
        local.job = replace(
            job,
            _owned=lambda: not (local.gone or local.stopping) and self._host.lease_valid(),
        )
        self._jobs[job.key] = local
        self._spawn(self._start(local), f"starting {job.key!r}")

    def _begin_stop(self, key: str, epoch: int) -> None:
        """A stop was requested for the job at ``epoch``: stop it and report the key free."""

        async def stop() -> None:
            try:
                await self._stop_local(key, epoch, report=True)
            except PoolError as exc:  # the reconciler frees the key from its record
                self._log.warning("could not report the stop", key=key, error=str(exc))

        self._spawn(stop(), f"stopping {key!r}")

    def _notify(self, key: str, epoch: int) -> None:
        """Notifications wait for the job at ``epoch``: take and deliver them (after start()
        returned). If the job left this worker meanwhile, they wait for its next owner."""
        local = self._jobs.get(key)
        if local is not None and local.job.epoch == epoch:
            self._spawn(self._deliver_notes(local), f"delivering notifications of {key!r}")

    async def _stop_local(self, key: str, epoch: int | None = None, report: bool = False) -> bool:
        """Stop a job here; True if stop() ran. ``report`` (with ``epoch``) frees the key in
        Redis afterwards, whatever happened here: also when nothing ran, or when the job went
        while this waited for the key (another stop ran it), so a stop is never left waiting.
        The report is sent after the key's lock is released: it holds up no other operation."""
        local = self._jobs.get(key)
        ran = False
        if local is not None and (epoch is None or local.job.epoch == epoch):
            local.stopping = True
            async with local.lock:
                if not local.gone:
                    await self._stop_locked(local)
                    ran = True
        if report and epoch is not None:
            await self._host.report_stopped(key, self.id, epoch)
        return ran

    async def _stop_all(self) -> None:
        """Stop every job here, without freeing keys (their records decide what comes next).
        Bounded by worker_shutdown_ttl: a job whose start() or stop() has not returned by
        then is abandoned (logged), so leaving never hangs on a handler."""
        stops = {asyncio.ensure_future(self._stop_local(key)): key for key in list(self._jobs)}
        if not stops:
            return
        _, pending = await asyncio.wait(stops, timeout=self._opts.worker_shutdown_ttl)
        if not pending:
            return
        stuck = sorted(stops[task] for task in pending)
        for task in pending:
            task.cancel()
        for key in stuck:
            local = self._jobs.get(key)
            if local is not None:
                self._forget(local)
        self._log.error(
            "handlers did not return within worker_shutdown_ttl; abandoning their jobs",
            keys=stuck,
            worker_shutdown_ttl=self._opts.worker_shutdown_ttl,
        )

    def _rename(self, worker_id: str) -> None:
        """The worker rejoined the pool under a new id (its old one was declared dead)."""
        self.id = worker_id
        self._log = self._host.log.bind(worker=worker_id)

    def _retire(self) -> None:
        self._stopped = True

    # -- internals --------------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        self._tasks.spawn(coro, f"{what} on worker {self.id}")

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
            try:
                outcome, message = await self._run_start(local)
            except _NotOwned:
                self._forget(local)  # fenced while start() waited for a thread or ran: as above
                return
            if local.gone:  # abandoned by stop_all() while start() ran: nobody else stops it
                if outcome == "ok":
                    await self._call_stop(job.key)
                return
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
                return
            await self._stop_locked(local)
        if verdict == "stop":
            await self._host.report_stopped(job.key, self.id, job.epoch)

    async def _run_start(self, local: _Local) -> tuple[str, str]:
        """start(), bounded by start_timeout: an async one is cancelled then; a sync one
        cannot be, so it is warned about (once per start_timeout) until it returns, and then
        stopped. Either way the dispatch fails. Returns (outcome, message) for the report.
        An async start() still running when the node fences is cancelled (raises _NotOwned):
        the fence's stop() of its key must not wait for it past the fence time."""
        job, limit = local.job, self._opts.start_deadline

        def still_owned() -> None:
            if not job.is_owned():
                raise _NotOwned

        call = call_maybe_async(
            self.handler.start, job, threads=self._threads.starts, before=still_owned
        )
        task = asyncio.ensure_future(call)
        began = time.monotonic()
        late = f"start() did not return within {limit:g}s (start_timeout)"
        if inspect.iscoroutinefunction(self.handler.start):
            ended = await self._while_owned(task, limit)
            if ended == "late":
                self._log.error(late + "; cancelled, the dispatch fails", key=job.key)
                return "error", late + "; it was cancelled"
            if ended == "fenced":
                self._log.info("start() cancelled: the node fenced", key=job.key)
                raise _NotOwned
        else:
            overran = False
            while not (await asyncio.wait({task}, timeout=limit))[0]:
                overran = True
                self._log.warning(
                    late + "; a sync start() cannot be cancelled: the key stays owned until it "
                    "returns, then stop() runs and the dispatch fails",
                    key=job.key,
                    running_for=round(time.monotonic() - began, 1),
                )
            if overran and task.exception() is None:
                await self._call_stop(job.key)
                took = time.monotonic() - began
                return "error", f"{late}; it returned after {took:.1f}s and was stopped"
        try:
            task.result()
        except _NotOwned:
            raise
        except Requeue as exc:
            return "requeue", requeue_message(exc)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            self._log.info("start failed", key=job.key, error=message)
            return "error", message
        return "ok", ""

    async def _while_owned(self, task: asyncio.Future[Any], limit: float) -> str:
        """Wait for a handler call made under a key's lock: 'done', or (the call abandoned:
        cancelled if async) 'late' after ``limit`` seconds, 'fenced' once the lease is no
        longer valid, so the fence's stop() of the key never waits for it."""
        began = time.monotonic()
        while True:
            window = min(began + limit - time.monotonic(), self._host.lease_valid_for())
            if (await asyncio.wait({task}, timeout=max(window, 0.0)))[0]:
                return "done"
            if time.monotonic() >= began + limit or not self._host.lease_valid():
                await abandon(task)
                return "late" if time.monotonic() >= began + limit else "fenced"

    async def _stop_locked(self, local: _Local) -> None:
        await self._call_stop(local.job.key)
        self._forget(local)

    async def _call_stop(self, key: str) -> None:
        """stop(), bounded by worker_shutdown_ttl; one that does not return by then is
        abandoned, and the job counts as stopped."""
        limit = self._opts.worker_shutdown_ttl
        task = asyncio.ensure_future(
            call_maybe_async(self.handler.stop, key, threads=self._threads.stops)
        )
        if not await finish_within(task, limit):
            self._log.error(
                f"stop() did not return within {limit:g}s (worker_shutdown_ttl); abandoned, "
                "the job counts as stopped",
                key=key,
            )
        elif task.exception() is not None:
            self._log.warning(
                "stop() raised; the job counts as stopped", key=key, error=repr(task.exception())
            )

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
        limit = self._opts.start_deadline
        for i, payload in enumerate(payloads):
            # Bounded like start(): it holds the key, and a stop (the fence's too) waits for it.
            task = asyncio.ensure_future(
                call_maybe_async(
                    self.handler.handle_notification,  # type: ignore[attr-defined]
                    key,
                    payload,
                    threads=self._threads.starts,
                )
            )
            ended = await self._while_owned(task, limit)
            if ended != "done":
                self._log.error(
                    f"handle_notification() did not return within {limit:g}s (start_timeout)"
                    if ended == "late"
                    else "handle_notification() abandoned: the node fenced",
                    key=key,
                    undelivered=len(payloads) - i - 1,
                )
                return
            if task.exception() is not None:
                self._log.warning(
                    "handle_notification raised", key=key, error=repr(task.exception())
                )

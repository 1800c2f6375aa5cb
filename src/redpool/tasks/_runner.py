"""A task worker: runs the jobs Redis hands it (never more than its slots: placement checks
them in Redis), with real timeouts and cancels (asyncio cancellation; sync tasks: an error at
their checkpoints and an async exception in their thread; process isolation: the end of the
run's child process), and reports how each run ended. Every report is fenced by
(worker, epoch) in its script."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
from structlog.typing import FilteringBoundLogger

from .._batch import Batcher
from .._redis import retry_transient
from .._threads import call_maybe_async, call_stoppable
from ..errors import (
    Fail,
    RetryLater,
    RunStoppedError,
    Skip,
    TaskProcessError,
    UnknownTaskError,
)
from . import _hooks as hooks
from ._codec import decode, describe, encode, encode_result
from ._context import RunContext, SyncRunContext
from ._control import Deadline, RunControl
from ._holds import HoldWaits, RunHolds
from ._process import Children
from ._recurring import NextRunIn, run_hint
from ._registry import Task, Tasks, retries, wait_seconds
from ._scripts import Claim, Report, TaskScripts

REPORT_DEADLINE = 30.0  # a report retried this long through an outage; the lease decides after


@dataclass
class _Run:
    epoch: int
    control: RunControl
    task: asyncio.Task[None] | None = None
    stop: str = ""  # canceled | timed_out | interrupted | stalled | shutdown | suspended
    done: asyncio.Event = field(default_factory=asyncio.Event)
    ctx: RunContext | None = None  # for the hooks, once the task is known
    hooks: tuple[object, ...] = ()
    result: Any = None
    error: BaseException | None = None
    watchdog: asyncio.TimerHandle | None = None  # stall_timeout
    next_in: float | None = None  # a schedule's run returned NextRunIn
    ended: bool = False  # its code stopped: hooks and the report run, and are never canceled
    begun: bool = False  # its task took its first step (a cancel before it would skip the report)


class TaskWorker:
    """Runs the tasks of one registry for the queues it serves (``node.add_task_worker``)."""

    def __init__(
        self,
        worker_id: str,
        tasks: Tasks,
        concurrency: int,
        queues: dict[str, int],
        scripts: TaskScripts,
        lease_valid: Callable[[], bool],
        on_retry: Callable[[float], None],
        log: FilteringBoundLogger,
        run_hooks: tuple[object, ...] = (),
        hold_waits: HoldWaits | None = None,
        children: Children | None = None,
    ) -> None:
        self.id = worker_id
        self._hold_waits = hold_waits
        self._children = children  # isolation="process": each run in a child process
        self._leaving = False
        self.hooks = run_hooks
        self.tasks = tasks
        self.concurrency = concurrency
        self.queues = queues
        self._scripts = scripts
        self._lease_valid = lease_valid
        self._on_retry = on_retry
        self.log = log.bind(worker=worker_id)
        self._runs: dict[str, _Run] = {}
        self._reports: Batcher[Report, tuple[str, str, int]] = Batcher(self._flush_reports)

    def __repr__(self) -> str:
        return f"<redpool.TaskWorker {self.id} running={len(self._runs)}>"

    def running(self) -> list[str]:
        """Keys of the runs under way here."""
        return list(self._runs)

    def unknown(self, runs: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
        """Of the (key, epoch) runs the records give this worker, those it does not have:
        neither being claimed (no task yet) nor running nor reporting (a run leaves ``_runs``
        once its report went through or gave up; a task that ended without that never ran)."""

        def has(key: str, epoch: int) -> bool:
            run = self._runs.get(key)
            return run is not None and run.epoch == epoch and not (run.task and run.task.done())

        return [(k, e) for k, e in runs if not has(k, e)]

    async def take(self, starts: Sequence[tuple[str, int]]) -> None:
        """Claim the runs handed to this worker and start them."""
        fresh = [(k, e) for k, e in starts if k not in self._runs or self._runs[k].epoch != e]
        if not fresh or not self._lease_valid() or self._leaving:
            return
        taking: dict[str, _Run] = {}
        for key, epoch in fresh:  # a duplicate start is ignored meanwhile; requests kept
            taking[key] = self._runs.setdefault(key, self._new_run(key, epoch))
        try:
            claims = await self._scripts.claim(self.id, self.tasks.suspendable(), fresh)
        finally:
            for key, epoch in fresh:
                run = self._runs.get(key)
                if run is not None and run.epoch == epoch and run.task is None:
                    del self._runs[key]
        for claim in claims:
            if claim is not None:
                run = taking[claim.key]
                if run.epoch != claim.epoch or run.task is not None:
                    run = self._new_run(claim.key, claim.epoch)
                self._runs[claim.key] = run
                if not self._lease_valid():  # fenced while the claim was on its way
                    run.stop = "interrupted"  # reported at once: its code never runs
                if claim.cancel_requested:
                    run.stop = run.stop or "canceled"
                run.task = asyncio.create_task(self._execute(claim, run), name=claim.key)

    def _new_run(self, key: str, epoch: int) -> _Run:
        def stop(reason: str) -> None:
            self.stop(key, epoch, reason)

        run = _Run(epoch, RunControl(key, epoch, self.id, self._scripts, stop, lambda: run.stop))
        return run

    def control(self, key: str, epoch: int, action: str) -> None:
        """The owner was told to 'cancel', 'pause', 'resume' or 'suspend' the run of
        ``key`` at ``epoch`` (an inbox message, or the upkeep saw the request pending)."""
        run = self._runs.get(key)
        if run is None or run.epoch != epoch:
            return
        if action == "cancel":
            self.stop(key, epoch, "canceled")
        else:
            run.control.request(action)

    def stop(self, key: str, epoch: int | None, reason: str) -> None:
        """Cancel the run of ``key`` (of ``epoch``, when given): the code stops at its next
        await; its report says ``reason``."""
        run = self._runs.get(key)
        if run is None or (epoch is not None and run.epoch != epoch):
            return
        if run.ended:  # a late request (the upkeep repeats pending ones) must not cancel the
            return  # report: the record would stay on this worker, and the key busy
        run.stop = run.stop or reason
        if run.task is None:  # being claimed: the run sees run.stop before its code starts
            return
        if reason == "interrupted" and self._children is not None:  # fenced: no grace
            self._children.kill(key, "its worker's lease may expire: no time for a grace")
        if run.begun:  # else its first step sees the stop and reports it (a task cancelled
            run.task.cancel()  # before its first step never runs its code: no report)
        run.control.wake()

    def done_events(self) -> list[asyncio.Event]:
        """Set as each run under way here ends (and is reported)."""
        return [run.done for run in self._runs.values()]

    def stop_all(self, reason: str) -> list[asyncio.Event]:
        self._leaving = self._leaving or reason == "shutdown"  # and takes no run after
        for key in list(self._runs):
            self.stop(key, None, reason)
        return self.done_events()

    async def close(self) -> None:
        """End what is left of this worker's runs now (their child processes, if any)."""
        if self._children is not None:
            await self._children.close()

    async def _execute(self, claim: Claim, run: _Run) -> None:
        run.begun = True
        try:
            outcome, value, retry_ms = await self._outcome(claim, run)
            run.ended = True
            if outcome == "suspended" and run.ctx is not None:
                await self._on_suspend(claim, run.ctx)
            if run.ctx is not None and run.hooks:
                await hooks.ended(run.hooks, run.ctx, outcome, run.result, run.error, self.log)
            chooser = self.tasks.get(claim.task).next_run_in if claim.task in self.tasks else None
            hint = await run_hint(claim, run.next_in, chooser, run.ctx, outcome, self.log)
            await self._report(claim, outcome, value, retry_ms, hint)
        finally:
            if self._runs.get(claim.key) is run:
                del self._runs[claim.key]
            run.done.set()

    async def _outcome(self, claim: Claim, run: _Run) -> tuple[str, bytes, int]:
        """(outcome, result or error, retry in ms or -1) of one run."""
        try:
            task = self.tasks.get(claim.task)
            # A child process decodes the params itself, into its own classes.
            params = claim.params if self._children else decode(claim.params, task.params_type)
        except (UnknownTaskError, Exception) as exc:  # not retryable: no run fixes it
            return "failed", _error(exc), -1
        owns, control = self._owns(claim), run.control
        holds = (
            RunHolds(self._hold_waits, self._scripts, self.id, claim.key, claim.epoch, self.log)
            if self._hold_waits is not None
            else None
        )
        ctx = run.ctx = (
            RunContext(claim, self.id, self._scripts, owns, self.log, control, holds)
            if task.is_async or self._children is not None
            else SyncRunContext(
                claim, self.id, self._scripts, owns, self.log, control, lambda: run.stop
            )
        )
        run.hooks = (*self.hooks, *self.tasks.hooks, *task.hooks)
        # A timeout is a stop of its own cause, not "elapsed > t"; its clock stops while the
        # run is paused.
        timer = control.deadline = Deadline(
            claim.timeout_ms / 1000 if claim.timeout_ms > 0 else None,
            lambda: self.stop(claim.key, claim.epoch, "timed_out"),
        )
        if claim.stall_timeout_ms > 0:
            self._watch_stall(claim, run, ctx, holds)
        try:
            if run.stop:  # stopped while it was being claimed or before its first step: its
                return run.stop, b"", -1  # code never starts (see stop())
            await hooks.start(run.hooks, ctx)
            result = run.result = await self._call(task, ctx, params, run)
        except asyncio.CancelledError as exc:
            if not run.stop:
                raise  # not ours: the worker itself is being torn down
            if run.stop == "timed_out":
                how = "".join(f"; {note}" for note in exc.args)  # a child's end, if any
                expired = run.error = TimeoutError(
                    f"timed out after {claim.timeout_ms / 1000:g}s{how}"
                )
                return "timed_out", _error(expired), self._retry(task, claim, expired)
            return run.stop, b"", -1
        except Skip as exc:
            return "skipped", _error(exc), -1
        except Fail as exc:
            run.error = exc
            return "failed", _error(exc), -1
        except RetryLater as exc:
            run.error = exc
            return "failed", _error(exc), round(exc.delay * 1000)
        except Exception as exc:
            run.error = exc
            return "failed", _error(exc), self._retry(task, claim, exc)
        finally:
            ctx.ended = True
            timer.cancel()
            if run.watchdog is not None:
                run.watchdog.cancel()
        if run.stop:  # the code returned although it was told to stop
            return run.stop, b"", -1
        if isinstance(result, NextRunIn):  # a schedule's task chose its next run
            run.next_in, result = result.delay, None
        try:
            return "succeeded", encode_result(result, claim.task, task.max_result_size), -1
        except Exception as exc:
            return "failed", _error(exc), -1

    async def _call(self, task: Task[Any, Any], ctx: RunContext, params: Any, run: _Run) -> Any:
        if self._children is not None:
            return await self._children.run(task, ctx, params, lambda: run.stop)
        if task.is_async:
            return await task.fn(ctx, params)
        # Plain functions run in a thread of their own; a stop raises in it (cooperative:
        # see the README) and, like an async run, the run ends only once the code stopped.
        return await call_stoppable(
            task.fn,
            ctx,
            params,
            interrupt=RunStoppedError,
            wait_when_cancelled=lambda: bool(run.stop),
        )

    def _watch_stall(
        self, claim: Claim, run: _Run, ctx: RunContext, holds: RunHolds | None
    ) -> None:
        """Stop the run once its code has called neither ``progress()`` nor
        ``checkpoint()`` for its stall timeout. Only this worker, the owner, judges it: the
        run is reported 'stalled' (interrupted) once its code stopped, and only then may it
        run again; another node never starts a second copy of a live run."""
        limit = claim.stall_timeout_ms / 1000
        loop = asyncio.get_running_loop()

        def check() -> None:
            if holds is not None and holds.waiting:  # waiting for a hold is no stall
                ctx.moved_at = time.monotonic()
            idle = 0.0 if run.control.paused else time.monotonic() - ctx.moved_at
            if idle >= limit:
                self.stop(claim.key, claim.epoch, "stalled")
            else:
                run.watchdog = loop.call_later(limit - idle, check)

        run.watchdog = loop.call_later(limit, check)

    async def _on_suspend(self, claim: Claim, ctx: RunContext) -> None:
        """The task's ``on_suspend(run)``, once its run stopped for a suspend (logged if it
        raises: the run is suspended either way)."""
        try:
            callback = self.tasks.get(claim.task).on_suspend
            if callback is not None:
                await call_maybe_async(callback, ctx)
        except Exception as exc:
            self.log.error("on_suspend failed", key=claim.key, error=repr(exc))

    def _retry(self, task: Task[Any, Any], claim: Claim, exc: BaseException) -> int:
        """Retry delay ms by the task's predicate and the stored wait (-1: do not retry;
        whether attempts are left is the script's call, from the stored max_attempts)."""
        verdict = exc.retryable if isinstance(exc, TaskProcessError) else None
        if verdict is None:  # a child asked the predicate itself, of the real exception
            verdict = retries(task.retry, claim.attempt, exc)
        if not verdict:
            return -1
        spec = msgpack.unpackb(claim.retry_spec) if claim.retry_spec else {}
        return round(wait_seconds(spec if isinstance(spec, dict) else {}, claim.attempt) * 1000)

    def _owns(self, claim: Claim) -> Callable[[], bool]:
        def owned() -> bool:
            run = self._runs.get(claim.key)
            return self._lease_valid() and run is not None and run.epoch == claim.epoch

        return owned

    async def _flush_reports(self, reports: Sequence[Report]) -> list[tuple[str, str, int]]:
        """The reports of one event-loop turn in one task_finish call (safe to retry: a
        report that went through is refused as 'unowned' the second time)."""
        return await retry_transient(
            lambda: self._scripts.finish(self.id, reports),
            time.monotonic() + REPORT_DEADLINE,
            f"reporting {len(reports)} task run(s)",
        )

    async def _report(
        self, claim: Claim, outcome: str, value: bytes, retry_ms: int, hint: bytes = b""
    ) -> None:
        try:
            verdict, status, due_ms = await self._reports.submit(
                (claim.key, claim.epoch, outcome, value, retry_ms, hint)
            )
        except Exception as exc:
            # The lease decides: if it expires, the run is interrupted and placed again.
            self.log.warning("could not report a run", key=claim.key, error=repr(exc))
            return
        if verdict == "unowned":
            self.log.info("run was not this worker's any more", key=claim.key)
        elif status == "scheduled":
            self._on_retry(max(0.0, due_ms / 1000))


def _error(exc: BaseException) -> bytes:
    return encode(describe(exc), "an error")

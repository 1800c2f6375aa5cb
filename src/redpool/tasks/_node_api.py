"""The tasks methods of ``redpool.Node`` (a mixin: the node's own module stays about the
pool core). Each call goes through the node's tasks layer, created on first use."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar, overload

import redis.asyncio as aioredis
from structlog.typing import FilteringBoundLogger

from .._host import Host
from .._keys import Keys
from .._lease import LeaseClock
from .._options import Options
from .._redis import Boundary, Outage, public
from .._validate import check_key
from ..errors import (
    InvalidArgumentError,
    PoolError,
    PoolShuttingDownError,
)
from ._handle import JobHandle
from ._hooks import check_hooks
from ._jobs import Jobs
from ._keys import TaskKeys
from ._process import KILL_GRACE, Children
from ._registry import UNSET, Retry, Task, Tasks, seconds
from ._runner import TaskWorker
from ._runtime import TaskLayer
from ._schedule_api import ScheduleMethods
from ._scripts import Admit, Refusal
from ._submission import Submission, admitted, check_in_batch, prepare
from ._wire import check_importable

P = TypeVar("P")
R = TypeVar("R")

SUBMIT_BATCH = 500  # jobs per task_submit call


class TaskMethods(ScheduleMethods):
    """Submit task jobs, wait for them, and host task workers (see the README, "Tasks")."""

    id: str
    log: FilteringBoundLogger
    _client: aioredis.Redis
    _keys: Keys
    _opts: Options
    _clock: LeaseClock
    _outage: Outage
    _host: Host
    _boundary: Boundary
    _task_layer: TaskLayer | None = None

    _check_open: Callable[[], None]

    def _layer(self) -> TaskLayer:
        self._check_open()
        if self._task_layer is None:
            layer = TaskLayer(
                self.id,
                self._client,
                TaskKeys(self._keys),
                self._opts,
                self._clock,
                self._outage,
                self.log,
                self._boundary,
            )
            self._host.fence_hooks.append(layer.fence)
            self._task_layer = layer
        return self._task_layer

    async def _started_layer(self) -> TaskLayer:
        layer = self._layer()
        await layer.start()
        return layer

    async def _drain_tasks(self, seconds: float) -> None:
        if self._task_layer is not None and seconds > 0:
            await self._task_layer.drain(seconds)

    async def _close_tasks(self) -> None:
        if self._task_layer is not None:
            await self._task_layer.close()

    @public
    async def add_task_worker(
        self,
        tasks: Tasks,
        *,
        concurrency: int = 10,
        queues: Mapping[str, int | None] | None = None,
        isolation: Literal["async", "thread", "process"] = "async",
        kill_grace: float | timedelta = KILL_GRACE,
        hooks: Sequence[object] | None = None,
    ) -> TaskWorker:
        """Serve ``tasks`` on ``queues`` (queue -> its own cap, None: up to
        ``concurrency``; default: the registry's default queue), running at most
        ``concurrency`` jobs at once (checked in Redis when a job is placed). Async tasks run
        on the event loop, plain ``def`` ones in threads; with ``isolation="process"`` every
        run executes in a child process, ended by a stop (SIGTERM, then SIGKILL after
        ``kill_grace`` seconds). ``hooks`` run before the registry's and the task's."""
        if isolation not in ("async", "thread", "process"):
            raise InvalidArgumentError(
                f"isolation must be 'async', 'thread' or 'process', got {isolation!r}"
            )
        grace = seconds(kill_grace, "kill_grace")
        run_hooks = check_hooks(hooks)
        if self._opts.client_only:
            raise PoolError("a client-only node cannot add task workers")
        if not isinstance(tasks, Tasks):
            raise InvalidArgumentError(f"tasks must be a redpool.Tasks, got {tasks!r}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidArgumentError(f"concurrency must be an int >= 1, got {concurrency!r}")
        caps: dict[str, int] = {}
        for queue, cap in (queues or {tasks.default_queue: None}).items():
            if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
                raise InvalidArgumentError(f"queue cap must be an int >= 1 or None: {cap!r}")
            caps[check_key(queue)] = -1 if cap is None else cap
        children = None
        if isolation == "process":
            check_importable(tasks)
            clock = self._clock
            children = Children(
                grace or KILL_GRACE, lambda: 0.0 if clock.fenced else clock.fence_at, self.log
            )
        layer = await self._started_layer()
        try:
            if children is not None:
                await children.prepare()
            return await layer.add_worker(
                lambda worker_id: TaskWorker(
                    worker_id,
                    tasks,
                    concurrency,
                    caps,
                    layer.scripts,
                    self._clock.valid,
                    layer.due_in,
                    self.log,
                    run_hooks,
                    layer.hold_waits,
                    children,
                )
            )
        except BaseException:
            if children is not None:  # no child outlives a worker that never joined
                await children.close()
            raise

    @public
    async def configure_queue(
        self, name: str, *, max_running: int | None = None, max_queued: int | None = None
    ) -> None:
        """Pool-wide caps of a queue: runs at once, and jobs waiting (QueueFullError beyond);
        None: no cap. The newer call wins."""
        for label, value in (("max_running", max_running), ("max_queued", max_queued)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise InvalidArgumentError(f"{label} must be an int >= 0 or None: {value!r}")
        layer = await self._started_layer()
        await layer.scripts.configure_queue(
            check_key(name),
            -1 if max_running is None else max_running,
            -1 if max_queued is None else max_queued,
        )

    @overload
    async def submit(
        self,
        task: Task[P, R],
        params: P,
        *,
        key: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        expires: float | timedelta | datetime | None = None,
        timeout: float | timedelta | None = UNSET,
        retry: Retry | None = UNSET,
        max_interrupts: int = UNSET,
        idempotency_key: str | None = None,
        idempotency_ttl: float | timedelta | None = None,
        if_active: Literal["reject", "return", "queue", "replace"] = "reject",
        tenant: str | None = None,
        labels: Mapping[str, str] | None = None,
        keep: float | timedelta | None = None,
        keep_failed: float | timedelta | None = None,
    ) -> JobHandle[R]: ...

    @overload
    async def submit(
        self,
        task: str,
        params: Any = None,
        *,
        key: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        expires: float | timedelta | datetime | None = None,
        timeout: float | timedelta | None = UNSET,
        retry: Retry | None = UNSET,
        max_interrupts: int = UNSET,
        idempotency_key: str | None = None,
        idempotency_ttl: float | timedelta | None = None,
        if_active: Literal["reject", "return", "queue", "replace"] = "reject",
        tenant: str | None = None,
        labels: Mapping[str, str] | None = None,
        keep: float | timedelta | None = None,
        keep_failed: float | timedelta | None = None,
    ) -> JobHandle[Any]: ...

    async def submit(
        self,
        task: Task[Any, Any] | str,
        params: Any = None,
        *,
        key: str | None = None,
        queue: str | None = None,
        priority: int = 0,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        expires: float | timedelta | datetime | None = None,
        timeout: float | timedelta | None = UNSET,
        retry: Retry | None = UNSET,
        max_interrupts: int = UNSET,
        idempotency_key: str | None = None,
        idempotency_ttl: float | timedelta | None = None,
        if_active: Literal["reject", "return", "queue", "replace"] = "reject",
        tenant: str | None = None,
        labels: Mapping[str, str] | None = None,
        keep: float | timedelta | None = None,
        keep_failed: float | timedelta | None = None,
    ) -> JobHandle[Any]:
        """Submit a task job and return its handle once admitted (it may not have started).
        ``key`` (default: a fresh one) is a singleton slot: while a job of that key is
        active, ``if_active="reject"`` raises JobExistsError (with ``.handle``),
        ``"return"`` returns the active job's handle, ``"queue"`` has this one wait in the
        key's FIFO (it runs after the ones before it ended), ``"replace"`` cancels the active
        one and runs this one next. ``priority`` 0..9: 9 starts first. ``expires``: a job
        not started by then (seconds from now, or an aware datetime) is canceled instead.
        ``max_interrupts``: runs lost with their worker before the job fails. ``keep`` /
        ``keep_failed``: how long the job is kept once it succeeded / ended otherwise (0:
        purged at the next retention pass). Options resolve here, once: submit > task >
        registry (> node, for keep times), and are stored with the job."""
        return await self._submit_one(
            Submission(
                task, params, key=key, queue=queue, priority=priority, delay=delay, at=at,
                expires=expires, timeout=timeout, retry=retry, max_interrupts=max_interrupts,
                idempotency_key=idempotency_key, idempotency_ttl=idempotency_ttl,
                if_active=if_active, tenant=tenant, labels=labels, keep=keep,
                keep_failed=keep_failed,
            )
        )  # fmt: skip

    @public
    async def _submit_one(self, sub: Submission) -> JobHandle[Any]:
        """The error boundary of submit() (whose overloads it cannot wrap)."""
        prepared = prepare(sub, self._opts.max_payload_size, self._keeps())
        [handle] = await self._admit(await self._started_layer(), [prepared])
        return handle

    @public
    async def submit_many(
        self, jobs: Sequence[Submission | tuple[Task[Any, Any] | str, Any]]
    ) -> list[JobHandle[Any]]:
        """Submit many jobs: ``redpool.Submission(task, params, key=..., ...)`` objects (the
        options of ``submit``, per job) or ``(task, params)`` pairs; handles in order. Up to
        SUBMIT_BATCH jobs go in one script call (one round trip), all or none: a bad item
        raises InvalidArgumentError (naming it) before anything is sent, and a refusal at
        admission (QueueFullError, JobExistsError, IdempotencyConflictError) admits none of
        its call's jobs. Larger batches take one call per SUBMIT_BATCH: on a refusal, the
        calls before it stand."""
        prepared = []
        keys: set[str] = set()
        fingerprints: dict[str, str] = {}
        for i, job in enumerate(jobs):
            try:
                sub = job if isinstance(job, Submission) else _pair(job)
                prepared.append(prepare(sub, self._opts.max_payload_size, self._keeps()))
                check_in_batch(prepared[-1][0], keys, fingerprints)
            except InvalidArgumentError as exc:
                raise InvalidArgumentError(f"submit_many item {i}: {exc}") from exc
            if i % SUBMIT_BATCH == SUBMIT_BATCH - 1:
                # Encoding is CPU work: 5,000 jobs blocked the loop ~1 s, long enough to fence
                # this node (its workers' runs stopped). Nothing is sent before all checked.
                await asyncio.sleep(0)
        layer = await self._started_layer()
        handles: list[JobHandle[Any]] = []
        for at in range(0, len(prepared), SUBMIT_BATCH):
            handles += await self._admit(layer, prepared[at : at + SUBMIT_BATCH])
        return handles

    def _keeps(self) -> tuple[float, float]:
        return self._opts.default_keep, self._opts.default_keep_failed

    async def _admit(
        self, layer: TaskLayer, prepared: Sequence[tuple[Admit, Any]]
    ) -> list[JobHandle[Any]]:
        """One task_submit call, all or none: a handle per job, or the error that refused
        one of them (then none was admitted)."""
        # A retry after a lost reply must not admit twice: without an idempotency key of the
        # user's, one of this node's own (kept briefly, not in the record) makes it safe.
        jobs: list[Admit] = []
        for job, _ in prepared:
            if not job.idempotency_key:
                request, ttl_ms = layer.memo()
                job = dataclasses.replace(
                    job, idempotency_key=request, idempotency_ttl_ms=ttl_ms, auto_idempotency=True
                )
            jobs.append(job)
        admissions = await layer.call(
            f"submitting {len(jobs)} task job(s)", lambda: layer.scripts.submit(jobs)
        )
        if admissions is None:
            raise PoolShuttingDownError("the pool is shutting down; it admits no new jobs")
        if isinstance(admissions, Refusal):
            job, (_, result_type) = jobs[admissions.index], prepared[admissions.index]
            refused = admitted(layer, job, result_type, admissions.admission, len(jobs))
            assert isinstance(refused, PoolError)
            raise refused
        out: list[JobHandle[Any]] = []
        for job, (_, result_type), admission in zip(jobs, prepared, admissions, strict=True):
            outcome = admitted(layer, job, result_type, admission)
            if isinstance(outcome, PoolError):  # the first pass refuses these: never seen
                raise outcome
            out.append(outcome)
        return out

    async def run(self, task: Task[P, R], params: P, *, timeout: float | None = None) -> R:
        """Submit and return the result (RPC style); see ``JobHandle.result``."""
        handle = await self.submit(task, params)
        return await handle.result(timeout)

    @property
    def jobs(self) -> Jobs:
        """The pool's task jobs: ``list(...)`` and ``stats()``."""
        return Jobs(self._layer())

    def job(self, key: str) -> JobHandle[Any]:
        """A handle to the task job ``key`` (no I/O; JobNotFoundError when used, if none)."""
        return JobHandle(self._layer(), check_key(key))


def _pair(job: object) -> Submission:
    if not isinstance(job, tuple) or len(job) != 2:
        raise InvalidArgumentError(
            f"give a redpool.Submission or a (task, params) pair, got {job!r:.100}"
        )
    return Submission(job[0], job[1])

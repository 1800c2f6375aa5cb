"""``node.schedule_job`` and ``node.schedules()``: recurring singleton task jobs (a mixin of
``TaskMethods``). A schedule is one task job whose record carries its spec; its due times
sit in the tasks layer's delayed set and fire from the upkeep's timers, like any delay."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

import redis.asyncio as aioredis

from .._codec import CorruptEntryError
from .._options import Options
from .._redis import Boundary, awaitable, public
from .._validate import check_key
from ..errors import JobExistsError, PoolShuttingDownError
from ._handle import JobHandle
from ._recurring import schedule_spec
from ._registry import UNSET, Retry, Task
from ._runtime import TaskLayer
from ._schedule_handle import ScheduleHandle, ScheduleInfo, decode_schedule
from ._submission import Submission, prepare


class ScheduleMethods:
    """Recurring jobs on the tasks layer (see the README, "Recurring jobs")."""

    _boundary: Boundary
    _client: aioredis.Redis
    _opts: Options
    _layer: Callable[[], TaskLayer]
    _started_layer: Callable[[], Awaitable[TaskLayer]]
    _keeps: Callable[[], tuple[float, float]]

    @public
    async def schedule_job(
        self,
        name: str,
        task: Task[Any, Any] | str,
        params: Any = None,
        *,
        every: float | timedelta | None = None,
        cron: str | None = None,
        tz: str = "UTC",
        start_at: datetime | None = None,
        end_at: datetime | None = None,
        max_runs: int | None = None,
        overlap: Literal["skip", "buffer_one", "cancel_other"] = "skip",
        catchup_window: float | timedelta | None = None,
        jitter: float | timedelta | None = None,
        run_now: bool = False,
        queue: str | None = None,
        timeout: float | timedelta | None = UNSET,
        retry: Retry | None = UNSET,
        tenant: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> ScheduleHandle:
        """Run ``task(params)`` as the job ``name`` on a grid of ``every`` (seconds or a
        timedelta, anchored at ``start_at`` or the registration, on the Redis clock) or of
        ``cron`` (5 fields, in ``tz``), one run at a time pool-wide, from ``start_at`` until
        ``end_at`` or ``max_runs`` occurrences (then ENDED). An upsert: every node may call
        it at start; the same spec changes nothing, a changed one takes over at once for the
        next occurrence. ``overlap``: due times passed during a run are dropped (``skip``),
        run once right after it (``buffer_one``) or cancel it (``cancel_other``); missed due
        times collapse into one run, or none when later than ``catchup_window``. ``jitter``
        delays each due time by up to that much (the same on every node). ``timeout`` and
        ``retry`` hold per occurrence: each gets a fresh retry budget."""
        job, _ = prepare(
            Submission(
                task, params, key=check_key(name), queue=queue, timeout=timeout, retry=retry,
                tenant=tenant, labels=labels,
            ),
            self._opts.max_payload_size,
            self._keeps(),
        )  # fmt: skip
        spec = schedule_spec(
            job, every, cron, tz, start_at, end_at, max_runs, overlap, catchup_window, jitter
        )
        layer = await self._started_layer()
        outcome, generation, _, due_ms = await layer.call(
            f"scheduling {name!r}", lambda: layer.scripts.schedule_upsert(job, spec, run_now)
        )
        if outcome == "shutdown":
            raise PoolShuttingDownError("the pool is shutting down; it admits no new jobs")
        if outcome == "exists":
            raise JobExistsError(name, JobHandle(layer, name, None, True, generation or None))
        if due_ms >= 0:
            layer.due_in(due_ms / 1000)
        return ScheduleHandle(layer, name)

    @public
    async def schedules(self) -> list[ScheduleInfo]:
        """Every schedule of the pool, oldest first, ended ones included until purged."""
        layer = await self._started_layer()
        names = await layer.call(
            "listing schedules", lambda: layer.client.zrange(layer.keys.schedules, 0, -1)
        )
        if not names:
            return []
        raws = await layer.call(
            "listing schedules", lambda: awaitable(layer.client.hmget(layer.keys.jobs, names))
        )
        out: list[ScheduleInfo] = []
        for raw_name, raw in zip(names, raws, strict=True):
            if raw is None:
                continue
            try:
                out.append(decode_schedule(raw_name.decode(), raw))
            except CorruptEntryError:
                layer.log.warning("corrupt schedule record skipped", key=raw_name.decode())
        return out

    def schedule_handle(self, name: str) -> ScheduleHandle:
        """A handle to the schedule ``name`` (no I/O; JobNotFoundError when used, if none)."""
        return ScheduleHandle(self._layer(), check_key(name))

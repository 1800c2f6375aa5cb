"""``ScheduleHandle``: a recurring job (``node.schedule_job``) seen from any node: wake it,
suspend, resume or cancel it, read its runs, counters and spec. ``ScheduleInfo`` and
``ScheduleMetrics`` are what it reads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgpack

from .._codec import CorruptEntryError
from .._redis import awaitable, public
from ..errors import InvalidTransitionError, JobNotFoundError
from ._handle import JobHandle
from ._recurring import CLOCK_MARGIN_MS, cron_grid, local_ms
from ._runtime import TaskLayer
from ._status import JobMetrics, RunInfo, Status, decode_metrics, from_ms


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule's spec and state (``ScheduleHandle.info()``, ``node.schedules()``); times
    are the Redis server's. ``runs`` counts the occurrences that ended."""

    name: str
    task: str
    queue: str
    status: Status  # scheduled between runs; starting, running...; suspended; ended, canceled
    generation: int
    every: float | None  # seconds, for an interval schedule
    cron: str | None
    tz: str | None
    start_at: datetime | None
    end_at: datetime | None
    max_runs: int | None
    overlap: str
    catchup_window: float | None
    jitter: float | None
    runs: int
    next_run_at: datetime | None  # when scheduled
    created_at: datetime
    worker_id: str | None


@dataclass(frozen=True, slots=True)
class ScheduleMetrics(JobMetrics):
    """A schedule's run counters (``JobMetrics``) and when it runs next."""

    next_run_at: datetime | None = None

    @property
    def ok(self) -> int:
        return self.succeeded


def decode_schedule(name: str, raw: bytes) -> ScheduleInfo:
    """A ScheduleInfo from a schedule's task record (lua/_task_recurring.lua)."""
    try:
        rec = msgpack.unpackb(raw)
        rc = rec["rc"]
        status = Status(rec["s"])

        def span(field: str) -> float | None:
            return rc[field] / 1000 if field in rc else None

        return ScheduleInfo(
            name=name,
            task=str(rec["t"]),
            queue=str(rec["q"]),
            status=status,
            generation=int(rec["g"]),
            every=span("p"),
            cron=rc.get("cr"),
            tz=rc.get("tz"),
            start_at=from_ms(rc["sa"]) if "sa" in rc else None,
            end_at=from_ms(rc["ea"]) if "ea" in rc else None,
            max_runs=rc.get("mr"),
            overlap=str(rc["ov"]),
            catchup_window=span("cw"),
            jitter=span("j"),
            runs=int(rc.get("n", 0)),
            next_run_at=from_ms(int(rec["due"])) if status == Status.SCHEDULED else None,
            created_at=from_ms(int(rec["c"])),
            worker_id=rec.get("w") or None,
        )
    except Exception as exc:  # garbage, or a plain task's record
        raise CorruptEntryError(f"bad schedule record: {exc}") from exc


class ScheduleHandle:
    """A schedule by name (its job key). ``job`` is the underlying task job's handle."""

    def __init__(self, layer: TaskLayer, name: str) -> None:
        self.name = name
        self.job: JobHandle[Any] = JobHandle(layer, name)
        self._layer = layer
        self._boundary = layer.boundary

    def __repr__(self) -> str:
        return f"<redpool.ScheduleHandle {self.name!r}>"

    @public
    async def wake(self, within: float = 0.0) -> None:
        """Run it now (or within ``within`` seconds): only ever earlier than planned. A wake
        during a run is kept: the schedule runs once more right after. The grid stays."""
        layer = self._layer
        outcome, status, due_ms = await layer.call(
            f"waking {self.name!r}",
            lambda: layer.scripts.schedule_wake(self.name, max(0, round(within * 1000))),
        )
        self._check(outcome, status, "wake")
        if due_ms >= 0:
            layer.due_in(due_ms / 1000)

    @public
    async def suspend(self) -> None:
        """Start no occurrence until ``resume()``; a run in flight finishes first."""
        await self._suspend("suspend", [])

    @public
    async def resume(self) -> None:
        """Go on from the next grid point (a wake kept while suspended runs at once)."""
        info = await self.info()
        grid = []
        if info.cron is not None:
            grid = cron_grid(info.cron, info.tz or "UTC", local_ms() - CLOCK_MARGIN_MS)
        await self._suspend("resume", grid)

    @public
    async def cancel(self, wait: bool = True, timeout: float | None = None) -> Status:
        """End the schedule (CANCELED); a run in flight is canceled too. With ``wait``,
        return once its code stopped."""
        return await self.job.cancel(wait, timeout)

    @public
    async def runs(self, limit: int = 20) -> list[RunInfo]:
        """The last finished runs, newest first."""
        return await self.job.runs(limit)

    @public
    async def metrics(self) -> ScheduleMetrics:
        """Run counters (runs, succeeded/ok, failed, ...) and the next run's time."""
        layer = self._layer

        async def read() -> list[Any]:
            async with layer.client.pipeline(transaction=True) as pipe:
                pipe.hgetall(layer.keys.stats(self.name))
                pipe.hget(layer.keys.jobs, self.name)
                return await pipe.execute()

        fields, raw = await layer.call(f"metrics of {self.name!r}", read)
        counters = decode_metrics(fields)
        next_run = decode_schedule(self.name, raw).next_run_at if raw else None
        return ScheduleMetrics(**_fields(counters), next_run_at=next_run)

    @public
    async def info(self) -> ScheduleInfo:
        layer = self._layer
        raw: bytes | None = await layer.call(
            f"info of {self.name!r}",
            lambda: awaitable(layer.client.hget(layer.keys.jobs, self.name)),  # type: ignore[arg-type]
        )
        if raw is None:
            raise JobNotFoundError(self.name)
        return decode_schedule(self.name, raw)

    async def _suspend(self, action: str, grid: list[int]) -> None:
        layer = self._layer
        outcome, status, due_ms = await layer.call(
            f"{action} of {self.name!r}",
            lambda: layer.scripts.schedule_suspend(self.name, action, grid),
        )
        self._check(outcome, status, action)
        if due_ms >= 0:
            layer.due_in(due_ms / 1000)

    def _check(self, outcome: str, status: str, action: str) -> None:
        if outcome == "missing":
            raise JobNotFoundError(self.name)
        if outcome == "invalid":
            raise InvalidTransitionError(self.name, status, action)


def _fields(metrics: JobMetrics) -> dict[str, Any]:
    return {name: getattr(metrics, name) for name in JobMetrics.__dataclass_fields__}

"""Recurring jobs' specs: an interval or a cron expression (cronsim, DST-aware through
``zoneinfo``), a window, max_runs, the overlap policy, and what a schedule's run tells the
script that ends it (``NextRunIn``, the next cron grid points). Lua keeps the interval grid
itself; cron points are computed here, since the cron library lives in Python."""

from __future__ import annotations

import hashlib
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgpack
from structlog.typing import FilteringBoundLogger

from ..errors import InvalidArgumentError
from ._registry import seconds
from ._scripts import Admit, Claim

OVERLAPS = ("skip", "buffer_one", "cancel_other")
CRON_POINTS = 8  # cron grid points written with each schedule change
CLOCK_MARGIN_MS = 60_000  # cron points start this far before the local clock (skew to Redis)


@dataclass(frozen=True)
class NextRunIn:
    """Return it from a schedule's task to run the next occurrence ``seconds`` after this
    one ended (Boundary's ``NextRunIn``; 0: at once) instead of at the next grid point."""

    seconds: float | timedelta

    def __post_init__(self) -> None:
        value = self.seconds
        if isinstance(value, timedelta):
            value = value.total_seconds()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise InvalidArgumentError(f"NextRunIn takes seconds >= 0, got {self.seconds!r}")
        object.__setattr__(self, "seconds", float(value))

    @property
    def delay(self) -> float:
        """The seconds as a float."""
        return float(self.seconds)  # type: ignore[arg-type]  # a float since __post_init__


def _ms(at: datetime | None, name: str) -> int | None:
    if at is None:
        return None
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise InvalidArgumentError(f"{name} must be an aware datetime, got {at!r}")
    return round(at.timestamp() * 1000)


def _zone(tz: str) -> Any:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise InvalidArgumentError(f"tz must be an IANA time zone name, got {tz!r}") from exc


def cron_grid(expr: str, tz: str, after_ms: int, count: int = CRON_POINTS) -> list[int]:
    """The next ``count`` times (ms) after ``after_ms`` that match ``expr`` in ``tz``: wall
    clock times in the zone, so a daily 02:30 stays 02:30 across a DST change (a time the
    change skips runs at its end, one it repeats runs once: cronsim follows cron)."""
    try:
        from cronsim import CronSim, CronSimError
    except ImportError as exc:  # pragma: no cover - the extra is in the test install
        raise InvalidArgumentError(
            "cron schedules need the cron extra: pip install 'redpool[cron]'"
        ) from exc
    start = datetime.fromtimestamp(after_ms / 1000, _zone(tz))
    try:
        points = CronSim(expr, start)
        out: list[int] = []
        while len(out) < count:
            at = round(next(points).timestamp() * 1000)
            if at > after_ms:
                out.append(at)
    except (CronSimError, StopIteration) as exc:
        raise InvalidArgumentError(f"cron {expr!r} is not a valid expression: {exc}") from exc
    return out


def local_ms() -> int:
    return round(time.time() * 1000)


def schedule_spec(
    job: Admit,
    every: float | timedelta | None,
    cron: str | None,
    tz: str,
    start_at: datetime | None,
    end_at: datetime | None,
    max_runs: int | None,
    overlap: str,
    catchup_window: float | timedelta | None,
    jitter: float | timedelta | None,
) -> dict[str, Any]:
    """The spec as lua/_task_recurring.lua stores it (rc), with its fingerprint over the
    task, queue, params and options too: an upsert of the same is a no-op."""
    if (every is None) == (cron is None):
        raise InvalidArgumentError("schedule_job takes one of every= or cron=")
    if overlap not in OVERLAPS:
        raise InvalidArgumentError(f"overlap must be one of {', '.join(OVERLAPS)}: {overlap!r}")
    if max_runs is not None and (
        isinstance(max_runs, bool) or not isinstance(max_runs, int) or max_runs < 1
    ):
        raise InvalidArgumentError(f"max_runs must be an int >= 1 or None, got {max_runs!r}")
    start_ms, end_ms = _ms(start_at, "start_at"), _ms(end_at, "end_at")
    if start_ms is not None and end_ms is not None and end_ms <= start_ms:
        raise InvalidArgumentError("end_at must be after start_at")
    spec: dict[str, Any] = {"k": "i" if cron is None else "c", "ov": overlap}
    if every is not None:
        period = seconds(every, "every")
        assert period is not None
        spec["p"] = max(1, round(period * 1000))
    else:
        if not isinstance(cron, str):
            raise InvalidArgumentError(f"cron must be a 5-field cron expression, got {cron!r}")
        _zone(tz)
        spec["cr"], spec["tz"] = cron, tz
    for field, value in (("sa", start_ms), ("ea", end_ms), ("mr", max_runs)):
        if value is not None:
            spec[field] = value
    for field, name, span in (("cw", "catchup_window", catchup_window), ("j", "jitter", jitter)):
        span_s = seconds(span, name)
        if span_s is not None:
            spec[field] = round(span_s * 1000)
    identity = [job.task, job.queue, job.params, job.options, spec]
    spec["fp"] = hashlib.sha1(msgpack.packb(identity)).hexdigest()
    if cron is not None:  # not in the fingerprint: the grid moves on with time
        spec["nc"] = cron_grid(cron, tz, max(local_ms() - CLOCK_MARGIN_MS, start_ms or 0))
    return spec


NextRunChooser = Callable[..., Any]


async def run_hint(
    claim: Claim,
    next_in: float | None,
    chooser: NextRunChooser | None,
    ctx: Any,
    outcome: str,
    log: FilteringBoundLogger,
) -> bytes:
    """What a schedule's run tells its finish (lua/task_finish.lua): the next run in ms the
    task chose (a returned NextRunIn, else the task's ``next_run_in(run, outcome)``) and a
    cron schedule's next grid points; b"" for a plain job."""
    if claim.schedule is None:
        return b""
    if next_in is None and chooser is not None and ctx is not None:
        try:
            chosen = chooser(ctx, outcome)
            if inspect.isawaitable(chosen):
                chosen = await chosen
            if chosen is not None:
                next_in = (chosen if isinstance(chosen, NextRunIn) else NextRunIn(chosen)).delay
        except Exception as exc:  # the grid decides then
            log.warning("next_run_in failed; the next grid point is used", error=repr(exc))
    hint: dict[str, Any] = {"n": -1 if next_in is None else round(next_in * 1000)}
    if claim.schedule.get("k") == "c":
        cron, tz = str(claim.schedule.get("cr")), str(claim.schedule.get("tz") or "UTC")
        hint["c"] = cron_grid(cron, tz, local_ms() - CLOCK_MARGIN_MS)
    return msgpack.packb(hint)

"""What a task job looks like from outside: its status, info, runs and pages of them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

import msgpack

from .._codec import CorruptEntryError

T = TypeVar("T")


class Status(str, enum.Enum):
    """The status of a task job (lower-case values, as stored)."""

    SCHEDULED = "scheduled"  # due later (delay, at, retry wait)
    QUEUED = "queued"  # due, waiting for a free slot
    LOCKED = "locked"  # due or scheduled, but a running job holds its key (run.hold)
    STARTING = "starting"  # handed to a worker
    RUNNING = "running"
    PAUSING = "pausing"  # pause requested; acknowledged at the run's next checkpoint
    PAUSED = "paused"  # waits at a checkpoint, keeping its slot, until resumed
    SUSPENDING = "suspending"  # suspend requested; the run stops at its next checkpoint
    SUSPENDED = "suspended"  # gave its slot back (a schedule: starts none); resume()
    CANCELING = "canceling"  # cancel requested; the code is being stopped
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELED = "canceled"
    SKIPPED = "skipped"
    ENDED = "ended"  # a schedule whose window or max_runs is spent

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {
        Status.SUCCEEDED,
        Status.FAILED,
        Status.TIMED_OUT,
        Status.CANCELED,
        Status.SKIPPED,
        Status.ENDED,
    }
)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """How a run failed: the exception's type name, message and traceback (text, never
    pickled)."""

    type: str
    message: str
    traceback: str = ""


@dataclass(frozen=True, slots=True)
class Progress:
    """The last progress a run recorded (``RunContext.progress``)."""

    completed: float
    total: float | None
    details: str
    updated_at: datetime

    @property
    def percent(self) -> float | None:
        return 100 * self.completed / self.total if self.total else None


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A task job's state (``JobHandle.info()``); times are the Redis server's."""

    key: str
    generation: int
    task: str
    queue: str
    status: Status
    attempt: int  # runs started and charged (interrupted runs are not)
    interrupts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker_id: str | None
    epoch: int
    tenant: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    idempotency_key: str | None = None
    error: ErrorInfo | None = None
    progress: Progress | None = None


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One finished run of a job (``JobHandle.runs()``)."""

    generation: int
    attempt: int
    worker_id: str
    epoch: int
    outcome: str  # succeeded, failed, timed_out, canceled, skipped, interrupted, suspended
    started_at: datetime
    ended_at: datetime
    error: ErrorInfo | None
    reason: str | None = None  # why it was interrupted: stalled, lost, fenced, shutdown, orphaned


@dataclass(frozen=True, slots=True)
class JobMetrics:
    """A key's run counters across its generations, until it is purged
    (``JobHandle.metrics()``); runtimes in seconds."""

    runs: int
    succeeded: int
    failed: int
    timed_out: int
    canceled: int
    skipped: int
    interrupted: int
    total_runtime: float
    last_runtime: float | None
    max_runtime: float | None
    last_finished_at: datetime | None
    last_error: ErrorInfo | None

    @property
    def mean_runtime(self) -> float | None:
        return self.total_runtime / self.runs if self.runs else None


def decode_metrics(fields: dict[bytes, bytes]) -> JobMetrics:
    def count(name: str) -> int:
        try:
            return int(fields.get(name.encode(), b"0"))
        except ValueError:
            return 0

    runs = count("runs")
    last = count("last")
    return JobMetrics(
        runs=runs,
        succeeded=count("succeeded"),
        failed=count("failed"),
        timed_out=count("timed_out"),
        canceled=count("canceled"),
        skipped=count("skipped"),
        interrupted=count("interrupted"),
        total_runtime=count("rt") / 1000,
        last_runtime=count("rl") / 1000 if runs else None,
        max_runtime=count("rmax") / 1000 if runs else None,
        last_finished_at=from_ms(last) if last else None,
        last_error=decode_error(fields.get(b"err")),
    )


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; pass ``cursor`` back for the next (None: the last page)."""

    items: list[T]
    cursor: str | None


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def _unpack(raw: bytes) -> Any:
    try:
        return msgpack.unpackb(raw)
    except Exception as exc:  # any garbage written by hand
        raise CorruptEntryError(f"undecodable: {exc}") from exc


def decode_error(raw: bytes | None) -> ErrorInfo | None:
    return _error(_unpack(raw)) if raw else None


def _error(value: Any) -> ErrorInfo:
    if not isinstance(value, dict):
        return ErrorInfo("Unknown", repr(value))
    return ErrorInfo(
        str(value.get("type", "")), str(value.get("message", "")), str(value.get("tb", ""))
    )


def decode_progress(flat: list[bytes]) -> Progress | None:
    if len(flat) != 4:
        return None
    try:
        total = float(flat[1])
        return Progress(
            float(flat[0]), None if total < 0 else total, flat[2].decode(), from_ms(int(flat[3]))
        )
    except ValueError:
        return None


def decode_info(
    key: str, raw: bytes, error: bytes | None, progress: list[bytes] | None = None
) -> JobInfo:
    """A JobInfo from the task record (lua/_tasks_prelude.lua), the stored error and
    progress."""
    rec = _unpack(raw)
    try:
        worker = rec.get("w") or None
        return JobInfo(
            key=key,
            generation=int(rec["g"]),
            task=str(rec["t"]),
            queue=str(rec["q"]),
            status=Status(rec["s"]),
            attempt=int(rec["a"]),
            interrupts=int(rec.get("ni", 0)),
            created_at=from_ms(int(rec["c"])),
            started_at=from_ms(int(rec["sa"])) if rec.get("sa") else None,
            finished_at=from_ms(int(rec["fin"])) if rec.get("fin") else None,
            worker_id=worker,
            epoch=int(rec["e"]),
            tenant=rec.get("tn") or None,
            labels=dict(rec.get("lb") or {}),
            idempotency_key=rec.get("ik") or None,
            error=decode_error(error) if Status(rec["s"]) != Status.SUCCEEDED else None,
            progress=decode_progress(progress or []),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CorruptEntryError(f"bad task record: {exc}") from exc


def decode_run(raw: bytes) -> RunInfo:
    rec = _unpack(raw)
    try:
        err = rec.get("err")
        return RunInfo(
            generation=int(rec["g"]),
            attempt=int(rec["a"]),
            worker_id=str(rec["w"]),
            epoch=int(rec["e"]),
            outcome=str(rec["o"]),
            started_at=from_ms(int(rec["s"])),
            ended_at=from_ms(int(rec["f"])),
            error=_error(err) if isinstance(err, dict) else None,
            reason=str(rec["rn"]) if rec.get("rn") else None,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CorruptEntryError(f"bad run entry: {exc}") from exc

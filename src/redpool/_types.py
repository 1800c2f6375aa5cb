"""The public value types and the Protocols users implement."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal, Protocol, runtime_checkable


def from_ms(ms: int) -> datetime:
    """A Redis server timestamp in ms as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def _always() -> bool:
    return True


@dataclass(frozen=True)
class Job:
    """A job as its worker sees it."""

    key: str
    payload: bytes
    created_at: datetime
    worker_id: str
    node_id: str
    """The node that dispatched the job."""
    epoch: int = 1
    """Fencing token: grows every time the job is assigned; pass it to systems you write to."""
    attempt: int = 0
    """How many times the job was requeued (a handler raised :class:`redpool.Requeue`)."""
    _owned: Callable[[], bool] = field(default=_always, repr=False, compare=False)

    def is_owned(self) -> bool:
        """Whether this worker still owns the job: its lease is fresh and no stop of it was
        asked for (False from the request on, before stop() is called). Long-running work
        should check it before each step that must not run twice."""
        return self._owned()


@dataclass(frozen=True)
class WorkerInfo:
    """A worker anywhere in the pool."""

    id: str
    node_id: str
    created_at: datetime
    host: str | None = None
    """Host name of the worker's process (None in a record written by an older redpool)."""
    pid: int | None = None
    """Process id of the worker's process on ``host``."""
    job_count: int = 0
    """Jobs assigned to the worker, in any state from assigned to stopping."""
    capacity: int | None = None
    """Most jobs the worker takes at once (``add_worker(capacity=)``); None: no limit."""


JobState = Literal["queued", "assigned", "starting", "running", "stopping"]
"""Where a job is: ``queued`` (no worker yet, or waiting for a requeue backoff), ``assigned``
(its worker was told to start it), ``starting`` (its worker claimed it and runs ``start()``),
``running`` (``start()`` returned), ``stopping`` (a stop was requested; ``stop()`` has not
returned yet)."""


@dataclass(frozen=True)
class JobInfo:
    """A job anywhere in the pool as its record in Redis describes it (without the payload)."""

    key: str
    state: JobState
    worker_id: str | None
    """The worker that owns the job; None while it is queued."""
    node_id: str | None
    """The node of that worker (not the dispatcher: see ``dispatcher_id``)."""
    host: str | None
    """Host name of that worker's process."""
    pid: int | None
    """Process id of that worker's process."""
    epoch: int
    """Fencing token of the current assignment (as :attr:`Job.epoch`)."""
    attempt: int
    """How many times the job was requeued (as :attr:`Job.attempt`)."""
    created_at: datetime
    """When the job was admitted."""
    started_at: datetime | None
    """When ``start()`` of the current assignment returned; None until then (also after a
    move, until the new owner's ``start()`` returned)."""
    payload_size: int
    """Length of the payload in bytes (``job_payload()`` returns the payload itself)."""
    dispatcher_id: str
    """The node that dispatched the job (:attr:`Job.node_id`)."""


@runtime_checkable
class JobHandler(Protocol):
    """What a worker runs. Each method may be sync (run in a thread) or async."""

    def start(self, job: Job) -> Awaitable[None] | None:
        """Start the job; return once it is started. Raise to fail the dispatch, or raise
        :class:`redpool.Requeue` to have it retried."""

    def stop(self, key: str) -> Awaitable[None] | None:
        """Stop the job; return once it is stopped."""


@runtime_checkable
class NotificationHandler(Protocol):
    """Optionally implemented by a :class:`JobHandler` to receive ``notify_worker`` payloads."""

    def handle_notification(self, key: str, payload: bytes) -> Awaitable[None] | None:
        """Handle a notification for a job this worker runs."""


@dataclass(frozen=True)
class JobParam:
    """A job a schedule's plan wants running."""

    key: str
    payload: bytes = b""


@dataclass(frozen=True)
class JobPlan:
    """What a schedule wants: jobs to start, keys to stop; ``stop_all`` stops every job the
    schedule started that is not in ``start`` (and then ``stop`` is ignored)."""

    start: list[JobParam] = field(default_factory=list)
    stop: list[str] = field(default_factory=list)
    stop_all: bool = False


@runtime_checkable
class JobProducer(Protocol):
    """Plans a schedule's jobs; ``plan`` runs on one node per interval, pool-wide."""

    @property
    def name(self) -> str:
        """Schedules of the same name on different nodes are one schedule."""

    def plan(self) -> Awaitable[JobPlan] | JobPlan:
        """The jobs to run now. Raise :class:`redpool.ScheduleStop` to end the schedule."""

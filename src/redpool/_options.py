"""Node options: defaults, validation and the timings derived from them."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._lifecycle import StateLostHook
from ._redis import MAX_CONNECTIONS
from .errors import InvalidArgumentError

MIB = 1024 * 1024
FAST_START_MARGIN_MS = 250  # clock estimate error and scheduling slack
# Below these, scheduling jitter and round trips are a large share of the lease or the grace,
# and leases flap (a node fences and rejoins over and over).
MIN_WORKER_TTL = 1.0
MIN_ACK_GRACE_PERIOD = 0.1
# A payload is sent and stored in one piece: a bigger one blocks Redis for every node while it
# is copied and can delay lease renewals past fencing.
MAX_PAYLOAD_LIMIT = 64 * MIB
# Notifications wait in Redis until the job's owner takes them: a job whose owner never does
# (no handle_notification, a stuck handler) must not grow its list without bound.
MAX_PENDING_NOTES = 1000
# Below it, bounded-load placement moves many keys on every join and leave (the number of
# moves grows like 1/eps^2).
MIN_LOAD_EPSILON = 0.01


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgumentError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidArgumentError(f"{name} must be > 0, got {value!r}")
    return float(value)


def _at_least(name: str, value: object, minimum: float) -> None:
    if _positive(name, value) < minimum:
        raise InvalidArgumentError(f"{name} must be at least {minimum:g} s, got {value!r}")


def _non_negative(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgumentError(f"{name} must be a number of seconds, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise InvalidArgumentError(f"{name} must be >= 0, got {value!r}")
    return float(value)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidArgumentError(f"{name} must be a positive int, got {value!r}")
    return value


@dataclass(frozen=True)
class Options:
    worker_ttl: float = 10.0
    ack_grace_period: float = 20.0
    max_queued_jobs: int = 1000
    worker_shutdown_ttl: float = 120.0
    job_sink_block: float = 5.0
    client_only: bool = False
    max_payload_size: int = MIB
    start_timeout: float | None = None
    """None: ``ack_grace_period`` (see ``start_deadline``)."""
    sync_threads: int = 32
    on_state_lost: StateLostHook | None = None
    """Called with the jobs this node was running when Redis lost the pool's state (they
    were stopped here), e.g. to dispatch them again."""
    connect_timeout: float = 10.0
    max_connections: int = MAX_CONNECTIONS
    default_keep: float = 86_400.0
    """Seconds a succeeded task job is kept (its result, runs, counters) unless its task or
    submit says otherwise."""
    default_keep_failed: float = 7 * 86_400.0
    """The same for the other finished statuses: failed, timed out, canceled, skipped."""
    max_retained: int = 100_000
    """Most finished task jobs kept pool-wide; beyond, the first finished are purged."""
    load_epsilon: float = 0.25
    """Bounded loads: no worker takes a job while it holds ceil((1 + eps) x the mean)."""

    def __post_init__(self) -> None:
        for name in ("worker_shutdown_ttl", "job_sink_block"):
            _positive(name, getattr(self, name))
        _at_least("worker_ttl", self.worker_ttl, MIN_WORKER_TTL)
        _at_least("ack_grace_period", self.ack_grace_period, MIN_ACK_GRACE_PERIOD)
        if self.start_timeout is not None:
            _positive("start_timeout", self.start_timeout)
        _count("sync_threads", self.sync_threads)
        _count("max_queued_jobs", self.max_queued_jobs)
        if _count("max_payload_size", self.max_payload_size) > MAX_PAYLOAD_LIMIT:
            raise InvalidArgumentError(
                f"max_payload_size may be at most {MAX_PAYLOAD_LIMIT} (64 MiB), got "
                f"{self.max_payload_size}; store large data elsewhere and pass a reference"
            )
        _count("max_connections", self.max_connections)
        _non_negative("default_keep", self.default_keep)
        _non_negative("default_keep_failed", self.default_keep_failed)
        retained = self.max_retained
        if isinstance(retained, bool) or not isinstance(retained, int) or retained < 0:
            raise InvalidArgumentError(f"max_retained must be an int >= 0, got {retained!r}")
        if _positive("load_epsilon", self.load_epsilon) < MIN_LOAD_EPSILON:
            raise InvalidArgumentError(
                f"load_epsilon must be at least {MIN_LOAD_EPSILON}, got {self.load_epsilon!r}"
            )
        if isinstance(self.connect_timeout, bool) or self.connect_timeout != 0:  # 0: try once
            _positive("connect_timeout", self.connect_timeout)
        if not isinstance(self.client_only, bool):
            raise InvalidArgumentError(f"client_only must be a bool, got {self.client_only!r}")
        if self.on_state_lost is not None and not callable(self.on_state_lost):
            raise InvalidArgumentError(
                f"on_state_lost must be a callable taking the lost jobs, got {self.on_state_lost!r}"
            )

    @property
    def dispatch_timeout(self) -> float:
        """How long dispatch_job waits for a start before withdrawing the job."""
        return 2 * self.ack_grace_period

    @property
    def start_deadline(self) -> float:
        """Seconds a start() may take before it fails the dispatch. By default the ack grace
        period: a start that begins on the first delivery then fails while its dispatcher
        still waits (``dispatch_timeout`` is twice as long), with JobStartError rather than
        DispatchTimeoutError, and before the start would be due for redelivery."""
        return self.ack_grace_period if self.start_timeout is None else self.start_timeout

    @property
    def heartbeat_interval(self) -> float:
        """Leases are renewed three times per TTL, so one lost beat never costs a lease."""
        return self.worker_ttl / 3

    @property
    def fence_after(self) -> float:
        """Seconds after a renewal was sent at which the node stops its jobs unless renewed
        again; the quarter TTL left is the time stop() handlers get before others may start
        the jobs."""
        return self.worker_ttl * 0.75

    def may_start_unclaimed(
        self, server_now_ms: float, withdraw_at_ms: int, lease_left: float
    ) -> bool:
        """A first delivery may be started without a claim when start() is bound to begin
        (within ``lease_left`` seconds, or the lease forbids it) before the dispatcher could
        withdraw the job, with a margin for the estimate of the server's clock."""
        latest_start_ms = server_now_ms + lease_left * 1000 + FAST_START_MARGIN_MS
        return latest_start_ms < withdraw_at_ms

    @property
    def loop_lag_limit(self) -> float:
        """An event-loop stall longer than this fences the node: it is the share of the TTL
        that fencing leaves stop() (``worker_ttl - fence_after``), which such a stall may
        have used up, so the lease may have expired for the other nodes meanwhile."""
        return self.worker_ttl - self.fence_after

    @property
    def socket_timeout(self) -> float:
        """For clients redpool creates: no call of theirs blocks, and one that takes longer
        than a lease is useless anyway; at least 5 s so that a busy Redis is not mistaken
        for a dead connection."""
        return max(5.0, self.worker_ttl)

    @property
    def reconcile_interval(self) -> float:
        return self.worker_ttl

    @property
    def ttl_ms(self) -> int:
        return int(self.worker_ttl * 1000)

    @property
    def grace_ms(self) -> int:
        return int(self.ack_grace_period * 1000)

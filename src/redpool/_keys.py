"""The one place that knows redpool's Redis key names.

Every key of a pool starts with ``redpool:{<pool>}:``; the braces make the pool name the Redis
Cluster hash tag, so all keys of a pool live in one slot and every Lua script is cluster-valid.
Two pools share nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidArgumentError

_ID_TEMPLATE = "*"


def _validate_pool_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"pool name must be a non-empty str, got {name!r}")
    if any(c in name for c in "{}*") or any(c.isspace() for c in name):
        raise InvalidArgumentError(f"pool name {name!r} may not contain braces, '*' or whitespace")
    return name


@dataclass(frozen=True)
class Keys:
    """Key names of one pool."""

    pool: str

    def __post_init__(self) -> None:
        _validate_pool_name(self.pool)

    @property
    def prefix(self) -> str:
        return f"redpool:{{{self.pool}}}:"

    @property
    def jobs(self) -> str:
        """HASH job key -> msgpack job record: the source of truth for every job."""
        return self.prefix + "jobs"

    @property
    def pending(self) -> str:
        """ZSET job key -> ms when its start is overdue (0: route now); admitted, not running."""
        return self.prefix + "pending"

    @property
    def workers(self) -> str:
        """HASH worker id -> msgpack {c: created ms}."""
        return self.prefix + "workers"

    @property
    def leases(self) -> str:
        """ZSET node or worker id -> lease expiry ms (Redis server time)."""
        return self.prefix + "leases"

    @property
    def meta(self) -> str:
        """HASH: ``incarnation`` (id of this life of the pool), ``version`` (membership
        counter), ``shutdown`` and ``deadline`` (server ms: when shutdown began, and when an
        unfinished one may be finished by anyone), ``epoch`` (the last epoch handed out:
        epochs are unique pool-wide)."""
        return self.prefix + "meta"

    @property
    def ended(self) -> str:
        """ZSET incarnation -> server ms it ended (shutdown or purge): the tombstone that tells
        a node cut off through a shutdown that its pool is gone; the one key a shutdown keeps
        (it expires)."""
        return self.prefix + "ended"

    @property
    def events(self) -> str:
        """STREAM of pool-wide events (membership changes, shutdown); hints, capped ~1000."""
        return self.prefix + "events"

    @property
    def tickers(self) -> str:
        """HASH ticker name -> msgpack {s: start ms, i: interval ms, k: last index taken}."""
        return self.prefix + "tickers"

    @property
    def backlog(self) -> str:
        """SET of the job keys admitted while no worker was there to take them, until they are
        assigned or deleted: what ``max_queued_jobs`` bounds."""
        return self.prefix + "backlog"

    @property
    def requests(self) -> str:
        """HASH ``<node id>:<request>`` -> msgpack outcome of a mutating script call, kept while
        its caller may retry it, so a retry after a lost reply gets the same answer."""
        return self.prefix + "requests"

    @property
    def request_expiry(self) -> str:
        """ZSET ``<node id>:<request>`` -> server ms after which its memo may be forgotten."""
        return self.prefix + "request_expiry"

    def notes(self, job_key: str) -> str:
        """LIST of notifications waiting for the owner of a job (deleted with the job)."""
        return f"{self.prefix}notes:{job_key}"

    def schedule_jobs(self, schedule: str) -> str:
        """SET of the job keys a schedule started (for JobPlan.stop_all)."""
        return f"{self.prefix}schedule:{schedule}:jobs"

    @property
    def schedule_jobs_template(self) -> str:
        """schedule_jobs() with ``*`` for the producer name (purge.lua fills it in)."""
        return self.schedule_jobs(_ID_TEMPLATE)

    def owned(self, worker_id: str) -> str:
        """SET of job keys assigned to a worker (lets a dead worker's jobs be found)."""
        return f"{self.prefix}worker:{worker_id}:jobs"

    def inbox(self, node_id: str) -> str:
        """STREAM of messages to a node: starts, stops, replies, notifications."""
        return f"{self.prefix}node:{node_id}:inbox"

    def script_keys(self) -> list[str]:
        """KEYS of every script, in the order lua/_prelude.lua expects."""
        return [
            self.jobs,
            self.pending,
            self.workers,
            self.leases,
            self.meta,
            self.events,
            self.tickers,
            self.ended,
            self.backlog,
            self.requests,
            self.request_expiry,
        ]

    def script_templates(self) -> list[str]:
        """First ARGV of every script: templates of the per-worker, per-node and per-job keys."""
        return [self.owned(_ID_TEMPLATE), self.inbox(_ID_TEMPLATE), self.notes(_ID_TEMPLATE)]

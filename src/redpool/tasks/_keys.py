"""The one place that knows the tasks layer's Redis key names (the pool core's are in
``redpool._keys``; the tasks layer reads two of them: the leases and the pool's meta hash).

Every key carries the pool's hash tag, so each task script is cluster-valid like the core's.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._keys import Keys

_ID = "*"


@dataclass(frozen=True)
class TaskKeys:
    """Key names of one pool's tasks layer."""

    core: Keys

    @property
    def prefix(self) -> str:
        return self.core.prefix + "t:"

    @property
    def jobs(self) -> str:
        """HASH job key -> msgpack task record (control state; see lua/_tasks_prelude.lua),
        kept after the job ended until its keep time passed."""
        return self.prefix + "jobs"

    @property
    def workers(self) -> str:
        """HASH task worker id -> msgpack {c: concurrency, q: {queue: cap, -1 for none}}."""
        return self.prefix + "workers"

    @property
    def delayed(self) -> str:
        """ZSET job key -> server ms it is due (delay, retry wait)."""
        return self.prefix + "delayed"

    @property
    def meta(self) -> str:
        """HASH: ``gen`` (generations) and ``epoch`` (run epochs, the fencing tokens)."""
        return self.prefix + "meta"

    @property
    def done(self) -> str:
        """ZSET finished job key -> server ms after which it is purged."""
        return self.prefix + "done"

    @property
    def queues(self) -> str:
        """HASH queue -> msgpack {mr: max_running, mq: max_queued} (-1: none)."""
        return self.prefix + "queues"

    @property
    def nodes(self) -> str:
        """SET of the node ids that have a tasks inbox (deleted when their lease is gone)."""
        return self.prefix + "nodes"

    def data(self, key: str) -> str:
        """HASH of a job's payloads: ``p`` params, ``res`` result, ``err`` error, ``st``,
        ``ck`` the last checkpoint state, progress ``pc pt pd pu``."""
        return f"{self.prefix}data:{key}"

    def runs(self, key: str) -> str:
        """LIST of a job's finished runs, newest first, msgpack each (capped at 20): what
        ``runs()`` reads."""
        return f"{self.prefix}runs:{key}"

    def inbox(self, node_id: str) -> str:
        """STREAM of messages to a node's tasks layer: starts, cancels, pauses, resumes,
        suspends, waiter replies."""
        return f"{self.prefix}inbox:{node_id}"

    def ready(self, queue: str) -> str:
        """ZSET job key -> priority band and server ms: the queue's jobs waiting for a slot."""
        return f"{self.prefix}ready:{queue}"

    def worker_runs(self, worker_id: str) -> str:
        """SET of the job keys a task worker runs (its SCARD is the worker's load)."""
        return f"{self.prefix}wruns:{worker_id}"

    def worker_queue(self, worker_queue: str) -> str:
        """SET of the job keys a worker runs from one queue (``<worker>|<queue>``)."""
        return f"{self.prefix}wq:{worker_queue}"

    @property
    def idempotency(self) -> str:
        """HASH idempotency key -> msgpack {key, g, fp}: the job the key made (also a
        submitting node's own keys that make its retries safe)."""
        return self.prefix + "idem"

    @property
    def idempotency_expiry(self) -> str:
        """ZSET idempotency key -> server ms until which its entry holds."""
        return self.prefix + "idem_expiry"

    @property
    def holds(self) -> str:
        """HASH held job key -> msgpack {h: holder key, e: holder epoch, wn: nodes waiting
        to hold it} (``run.hold()``; lua/_tasks_holds.lua)."""
        return self.prefix + "holds"

    def status(self, status: str) -> str:
        """ZSET job key -> created ms, per status: what ``jobs.list`` pages through."""
        return f"{self.prefix}status:{status}"

    def active(self, queue: str) -> str:
        """SET of a queue's job keys on a worker (starting, running, pausing, paused,
        suspending, canceling), pool-wide."""
        return f"{self.prefix}active:{queue}"

    def stats(self, key: str) -> str:
        """HASH of a key's run counters (runs, one per outcome, rt/rl/rmax runtime ms, last
        finish ms, err), across its generations until the key is purged: ``metrics()``."""
        return f"{self.prefix}stats:{key}"

    def next(self, key: str) -> str:
        """LIST of the submissions waiting in a key's FIFO (``if_active="queue"`` or
        ``"replace"``): msgpack {g, t, q, o, d, ik, c, rw}; their params are ``p<g>`` in
        ``data:<key>``."""
        return f"{self.prefix}next:{key}"

    @property
    def schedules(self) -> str:
        """ZSET schedule name (its job key) -> created ms: what ``node.schedules()`` lists."""
        return self.prefix + "schedules"

    def script_keys(self) -> list[str]:
        """KEYS of every task script, in the order lua/_tasks_prelude.lua expects."""
        return [
            self.jobs,
            self.workers,
            self.delayed,
            self.meta,
            self.done,
            self.core.leases,
            self.core.meta,
            self.queues,
            self.nodes,
            self.idempotency,
            self.idempotency_expiry,
            self.schedules,
            self.holds,
        ]

    def script_templates(self) -> list[str]:
        """First ARGV of every task script: the templates of the per-key keys."""
        return [
            self.data(_ID),
            self.runs(_ID),
            self.inbox(_ID),
            self.ready(_ID),
            self.worker_runs(_ID),
            self.worker_queue(_ID),
            self.status(_ID),
            self.active(_ID),
            self.stats(_ID),
            self.next(_ID),
        ]

"""A node: one process's membership in a pool. It dispatches and stops jobs anywhere in the
pool and hosts workers; its background loops (inbox reader, heartbeat, reconciler) keep its
workers' jobs in line with their records in Redis."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeVar

import redis.asyncio as aioredis
import structlog
from structlog.typing import FilteringBoundLogger

from ._codec import Message
from ._dispatch import Dispatcher
from ._host import Host
from ._inbox import InboxReader, InboxRouter
from ._keys import Keys
from ._lease import Lease, LeaseClock
from ._lifecycle import LifeChanged, PoolLife, purge, shutting_down, state_lost, wait_for_nodes
from ._membership import Membership
from ._options import Options
from ._queries import Queries
from ._reconcile import Reconciler
from ._redis import (
    TRANSIENT,
    UNREACHABLE,
    Boundary,
    Outage,
    public,
    reader_client,
    retry_transient,
)
from ._schedule import Schedule, ticker_name
from ._scripts import Beat, Scripts
from ._tasks import cancel, supervise
from ._ticker import Ticker
from ._types import Job, JobHandler, JobInfo, JobProducer, WorkerInfo
from ._validate import check_handler, check_key, check_name, interval_ms
from ._watchdog import LoopWatchdog
from ._worker import Worker
from .errors import (
    InvalidArgumentError,
    PoolClosedError,
    PoolError,
    PoolShuttingDownError,
)
from .tasks._node_api import TaskMethods

T = TypeVar("T")


class Node(TaskMethods):
    """A member of a pool; create one with :func:`redpool.add_node`. Its tasks methods
    (submit, add_task_worker, ...) come from ``tasks/_node_api.py``."""

    def __init__(
        self,
        pool_name: str,
        client: aioredis.Redis,
        owns_client: bool,
        options: Options,
        logger: FilteringBoundLogger | None,
    ) -> None:
        self.id = secrets.token_hex(6)
        self.pool_name = pool_name
        self._opts = options
        self._keys = Keys(pool_name)
        self._client = client
        self._owns_client = owns_client
        self._boundary = Boundary(client)
        self._scripts = Scripts(client, self._keys)
        base: FilteringBoundLogger = logger or structlog.get_logger("redpool")
        self.log = base.bind(pool=pool_name, node=self.id)
        self._outage = Outage(self.log)
        self._members = Membership(client, self._keys, self._scripts, options, self.log)
        self._dispatcher = Dispatcher(self.id, pool_name, self._scripts, options, self._members)
        self._queries = Queries(client, self._keys, self._scripts, self.log)
        self._clock = clock = LeaseClock()
        self._life = PoolLife()
        self._host = Host(
            self.id, pool_name, clock, self._members, self._scripts, options, self.log, self._life
        )
        self._closed = False
        self._shutdown = False
        self._initiating = False  # this node's shutdown() is under way
        self._tasks: list[asyncio.Task[None]] = []
        self._lease = Lease(
            self.id,
            clock,
            self._host,
            self._members,
            self._scripts,
            options,
            self.log,
            self._on_beat,
            lambda: self._inbox.inbox_cursor if self._inbox else "",
            self._life,
            self._on_life_changed,
        )
        self._reconciler = Reconciler(self._host, self._members, self._scripts, options)
        self._watchdog = LoopWatchdog(
            options.loop_lag_limit,
            lambda lag: self._lease.fence(f"event loop was blocked for {lag:.3f}s"),
            self.log,
        )
        self._inbox: InboxReader | None = None
        self._left = asyncio.Event()  # set once _close() has finished
        self._reader_client: aioredis.Redis | None = None
        self._tickers: list[Ticker] = []
        self._schedules: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        workers = len(self._host.workers)
        return f"<redpool.Node {self.id} pool={self.pool_name!r} workers={workers}>"

    async def _open(self) -> None:
        # A shutdown whose initiator died is finished here once its deadline has passed.
        pending = await purge(self._scripts, True, f"finishing the shutdown of {self.pool_name!r}")
        if pending.status == "pending":
            raise shutting_down(self.pool_name, pending)
        await self._host.refresh_ring()
        last = await self._client.xrevrange(self._keys.events, count=1)
        # The blocking read gets a connection of its own: cancelling it on close must not
        # leave a broken connection in the pool every other call uses.
        self._reader_client = reader_client(self._client, self._opts.job_sink_block)
        router = InboxRouter(
            self._scripts, self._host, self._clock, self._dispatcher, self._opts, self.log
        )
        self._inbox = InboxReader(
            self._reader_client,
            self._keys,
            self.id,
            router,
            self._on_events,
            self._opts.job_sink_block,
            last[0][0].decode() if last else "0-0",
        )
        beat = await self._lease.beat()
        if beat.shutdown:  # it began since the check above
            await self._close(PoolShuttingDownError("the pool is shutting down"))
            raise PoolShuttingDownError(
                f"pool {self.pool_name!r} began to shut down while this node joined; "
                "add_node() works again once it finished"
            )
        self._tasks.append(supervise("inbox", self._inbox.step, self._outage))
        self._tasks.append(
            supervise(
                "heartbeat", self._lease.step, self._outage, self._opts.heartbeat_interval / 2
            )
        )
        if not self._opts.client_only:
            self._tasks.append(supervise("reconcile", self._reconciler.step, self._outage))
            self._watchdog.start()
        self.log.info("node joined", client_only=self._opts.client_only)

    # -- public API -------------------------------------------------------------------------

    def is_closed(self) -> bool:
        return self._closed

    def is_shutdown(self) -> bool:
        return self._shutdown

    def workers(self) -> list[Worker]:
        """The workers of this node."""
        return list(self._host.workers.values())

    @public
    async def add_worker(self, handler: JobHandler, capacity: int | None = None) -> Worker:
        """Add a worker running ``handler``, with at most ``capacity`` jobs (None: no limit)."""
        self._check_open()
        if self._opts.client_only:
            raise PoolError("a client-only node cannot add workers; create it without client_only")
        check_handler(handler)
        try:
            worker = await self._host.add(handler, capacity)
        except LifeChanged:  # the beat adopts the pool's new life, or closes this node
            await self._lease.beat()
            self._check_open()
            worker = await self._host.add(handler, capacity)
        self._lease.wake()  # route queued jobs to the new worker now
        return worker

    @public
    async def remove_worker(self, worker: Worker) -> None:
        """Stop the worker's jobs here and hand them to the other workers of the pool."""
        self._check_open()
        if self._host.workers.get(worker.id) is not worker:
            raise InvalidArgumentError(f"{worker!r} is not a worker of this node")
        await self._host.remove([worker])
        await self._lease.beat()  # route its jobs now, not at the next beat

    @public
    async def dispatch_job(self, key: str, payload: bytes = b"") -> None:
        """Start a job on the worker that owns ``key``; return once its start() returned."""
        self._check_open()
        await self._dispatcher.dispatch(key, payload)

    @public
    async def stop_job(self, key: str) -> None:
        """Stop the job ``key`` wherever it runs; return once its stop() returned and the key
        is free."""
        self._check_open()
        await self._dispatcher.stop(key)

    @public
    async def notify_worker(self, key: str, payload: bytes) -> None:
        """Deliver ``payload`` to ``handle_notification`` of the worker that runs ``key``,
        once and in the order sent per key (also when the job moves meanwhile)."""
        self._check_open()
        await self._dispatcher.notify(key, payload)

    @public
    async def new_ticker(self, name: str, interval: float) -> Ticker:
        """A ticker shared by every node that creates one of this ``name``: each tick goes to
        exactly one node that is iterating. A ticker of another interval replaces the older
        one of that name (the newer wins)."""
        self._check_full_node("tickers")
        name, ms = check_name(name, "ticker name"), interval_ms(interval)
        await self._scripts.ticker(name, ms)
        ticker = Ticker(
            name, ms, self._client, self._keys, self._scripts, self._life, self.log, self._boundary
        )
        self._tickers.append(ticker)  # closed with the node
        return ticker

    @public
    async def schedule(self, producer: JobProducer, interval: float) -> None:
        """Run ``producer.plan()`` every ``interval`` seconds on one node of the pool (the
        schedules of every node with this producer name are one schedule) and apply it."""
        self._check_full_node("schedules")
        if not isinstance(producer, JobProducer):
            raise InvalidArgumentError("producer must have a name and a plan() method")
        name, ms = ticker_name(check_name(producer.name, "producer name")), interval_ms(interval)
        await self._scripts.ticker(name, ms)
        ticker = Ticker(
            name, ms, self._client, self._keys, self._scripts, self._life, self.log, self._boundary
        )
        plan = Schedule(producer, ticker, self._dispatcher, self._client, self._keys, self.log)
        self._tickers.append(ticker)
        self._schedules.append(supervise(name, plan.step, self._outage))

    @public
    async def job_keys(self) -> list[str]:
        """Keys of every job in the pool, whatever its state (from admitted to stopping)."""
        self._check_open()
        return await self._query(self._queries.job_keys, "job keys")

    @public
    async def job_payload(self, key: str) -> bytes | None:
        """The payload of job ``key`` (b"" when empty), or None when there is no such job."""
        self._check_open()
        key = check_key(key)
        return await self._query(lambda: self._queries.job_payload(key), f"payload of {key!r}")

    @public
    async def job_info(self, key: str) -> JobInfo | None:
        """Where job ``key`` is: its state, worker, node, host and pid, epoch, attempts and
        times (not its payload), or None when there is no such job."""
        self._check_open()
        key = check_key(key)
        return await self._query(lambda: self._queries.job_info(key), f"job info of {key!r}")

    @public
    async def pool_jobs(self, worker: str | None = None) -> list[JobInfo]:
        """Every job of the pool, or only those of the worker with id ``worker``, sorted by
        key; one round trip per 500 jobs. Not a snapshot: a job that moves meanwhile is listed
        where its record was when its page was read."""
        self._check_open()
        if worker is not None:
            check_name(worker, "worker id")
        return await self._query(lambda: self._queries.pool_jobs(worker), "pool jobs")

    @public
    async def pool_workers(self) -> list[WorkerInfo]:
        """Every worker of the pool, on every node, with its host, pid and job count."""
        self._check_open()
        return await self._query(self._queries.pool_workers, "pool workers")

    @public
    async def close(self, drain: float = 0.0) -> None:
        """Leave the pool: this node's jobs move to workers on other nodes (stop() runs here
        first). Other nodes keep running. Returns once the node has left, also when a pool
        shutdown had already begun to take it out. ``drain``: seconds its task runs may
        take to finish first (the rest run again elsewhere, no attempt charged)."""
        if not self._closed:
            with contextlib.suppress(*TRANSIENT):
                await self._drain_tasks(drain)
            await self._close(PoolClosedError("the node was closed"))
        await self._left.wait()

    @public
    async def shutdown(self) -> None:
        """Shut the whole pool down: every node stops its jobs and leaves; returns when all
        have (or worker_shutdown_ttl passed), with every key of the pool deleted. If this
        process dies meanwhile, the next add_node() of the pool finishes the shutdown once
        worker_shutdown_ttl has passed."""
        self._check_open()
        # From here on this node deletes the pool and closes the client last: the shutdown
        # event this node reads meanwhile must not close the client under the purge.
        self._initiating = True
        ttl_ms = int(self._opts.worker_shutdown_ttl * 1000)
        times = await self._scripts.shutdown(self._life.id, ttl_ms)
        if times is None:  # the pool's life changed: the beat adopts the new one or closes us
            await self._lease.beat()
            self._check_open()
            times = await self._scripts.shutdown(self._life.id, ttl_ms)
        if times is None:
            raise PoolShuttingDownError(f"pool {self.pool_name!r} was shut down")
        await self._leave_for_shutdown()
        # One shutdown under way (this one, or an earlier one): wait for its deadline only.
        await wait_for_nodes(self._client, self._keys, times.left)
        await purge(self._scripts, False, f"deleting pool {self.pool_name!r}")
        await self._release_client()

    async def __aenter__(self) -> Node:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- internals --------------------------------------------------------------------------

    async def _query(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """A read for the user, retried through an outage like dispatch_job."""
        return await retry_transient(call, time.monotonic() + self._opts.dispatch_timeout, what)

    def _check_full_node(self, what: str) -> None:
        self._check_open()
        if self._opts.client_only:
            raise PoolError(f"{what} need a full node; this one is client-only")

    def _check_open(self) -> None:
        if self._shutdown:
            raise PoolShuttingDownError(f"pool {self.pool_name!r} was shut down")
        if self._closed:
            raise PoolClosedError(f"node {self.id} is closed")

    async def _on_events(self, events: list[Message]) -> None:
        kinds = {e.kind for e in events}
        if "shutdown" in kinds:
            self._host.spawn(self._leave_for_shutdown(), "leaving for the pool shutdown")
        elif "members" in kinds:
            await self._host.refresh_ring()

    async def _on_beat(self, beat: Beat) -> None:
        if beat.reaped:
            self.log.info("reaped expired leases", reaped=beat.reaped, released=beat.released)
        if beat.missing:
            self._host.rejoin(beat.missing)
        if beat.version != self._members.ring.version:
            await self._host.refresh_ring()
        if beat.shutdown and not self._shutdown:
            self._host.spawn(self._leave_for_shutdown(), "leaving for the pool shutdown")
            return
        if beat.routable:
            await self._members.assign(beat.routable)
        for key in beat.corrupt:
            self.log.error("corrupt job record left alone; stop_job() removes it", key=key)

    def _on_life_changed(self, beat: Beat, fenced: list[Job]) -> None:
        """The heartbeat found the node's incarnation is not the pool's (lifecycle.py)."""
        if beat.ended:
            if not self._closed:
                self.log.warning(
                    "the pool was shut down while this node was cut off; closing, not rejoining"
                )
                self._host.spawn(self._leave_for_shutdown(), "leaving the ended pool")
            return
        if self._inbox is not None:
            self._inbox.restart()  # both streams were recreated: their ids start afresh
        state_lost(self._host, self.log, self._opts.on_state_lost, beat.incarnation, fenced)

    async def _leave_for_shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        self.log.info("pool shutting down; stopping this node's jobs")
        await self._close(
            PoolShuttingDownError("the pool is shutting down"),
            release=False,
            release_client=not self._initiating,
        )

    async def _close(
        self, reason: PoolError, release: bool = True, release_client: bool = True
    ) -> None:
        self._closed = True
        try:
            await self._leave(reason, release, release_client)
        finally:
            self._left.set()

    async def _leave(self, reason: PoolError, release: bool, release_client: bool) -> None:
        with contextlib.suppress(*TRANSIENT):
            await self._close_tasks()
        if not release:
            await self._host.stop_all()
        elif self._host.workers:
            try:
                await self._host.remove(list(self._host.workers.values()))
            except UNREACHABLE as exc:
                self.log.warning("could not hand jobs over; their leases will", error=repr(exc))
        if release:
            with contextlib.suppress(*TRANSIENT):
                await self._lease.beat(timeout=self._opts.heartbeat_interval)
        for ticker in self._tickers:
            ticker.close()
        await cancel([*self._tasks, *self._schedules])
        self._tasks.clear()
        self._lease.close()
        self._host.close()
        self._watchdog.close()
        self._dispatcher.fail_all(reason)
        # A worker still here could not leave (Redis was unreachable): its lease stays and
        # expires, and the reaper releases its jobs. On a shutdown they all go with the pool.
        leases = [self.id, *self._host.workers] if self._shutdown else [self.id]
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.zrem(self._keys.leases, *leases)
            pipe.delete(self._keys.inbox(self.id))
            await pipe.execute()
        except TRANSIENT as exc:
            self.log.warning("could not deregister; the lease will expire", error=repr(exc))
        self._host.workers.clear()
        if release_client:
            await self._release_client()
        self.log.info("node left", reason=str(reason))

    async def _release_client(self) -> None:
        await self._scripts.aclose()
        if self._reader_client is not None:
            await self._reader_client.aclose()
        if self._owns_client:
            await self._client.aclose()

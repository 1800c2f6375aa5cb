"""The host of a node's local workers: it adds, removes and rejoins them, carries their
reports to Redis (batched), and stops their jobs when the lease fences them.

Workers call back into it (``_worker.WorkerHost``); so do the inbox router, the lease and
the reconciler. None of this is reachable from the public ``Node``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar

from structlog.typing import FilteringBoundLogger

from ._batch import Batcher
from ._dispatch import MEMO_MARGIN
from ._lease import FencedJob, LeaseClock
from ._lifecycle import LifeChanged, PoolLife
from ._membership import Membership
from ._options import Options
from ._redis import retry_transient
from ._requeue import DueRoutes
from ._scripts import Scripts, Started, Stopped
from ._tasks import TaskSet
from ._types import Job, JobHandler, from_ms
from ._validate import check_capacity
from ._worker import HandlerThreads, Worker
from .errors import PoolShuttingDownError, RedisUnavailableError

T = TypeVar("T")


class Host:
    def __init__(
        self,
        node_id: str,
        pool_name: str,
        clock: LeaseClock,
        members: Membership,
        scripts: Scripts,
        options: Options,
        log: FilteringBoundLogger,
        life: PoolLife,
    ) -> None:
        self.log = log
        self.life = life
        self.workers: dict[str, Worker] = {}
        self._node_id = node_id
        self._pool_name = pool_name
        self._clock = clock
        self._members = members
        self._scripts = scripts
        self._opts = options
        self._seq = itertools.count(1)
        self._requests = itertools.count(1)  # of take_notes calls (memos are per worker id)
        # Serialises the changes of a worker's registration (join under a new id, leave), so a
        # rejoin racing remove_worker cannot register a worker that was just removed.
        self._registration = asyncio.Lock()
        self._rejoining: set[str] = set()
        self._tasks = TaskSet(log)
        self._due = DueRoutes(members.assign, log)
        self._started: Batcher[Started, str] = Batcher(self._flush_started)
        self._stopped: Batcher[Stopped, int] = Batcher(self._flush_stopped)
        self.threads = HandlerThreads.sized(options.sync_threads)
        self.fence_hooks: list[Callable[[], None]] = []  # the tasks layer stops its runs

    def spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        """Run ``coro`` in the background; a failure is logged."""
        self._tasks.spawn(coro, what)

    # -- for the workers (_worker.WorkerHost) ----------------------------------------------

    def lease_valid(self) -> bool:
        return self._clock.valid()

    def lease_valid_for(self) -> float:
        return self._clock.valid_for()

    async def report_started(
        self, key: str, worker: str, epoch: int, outcome: str, message: str
    ) -> str:
        item = Started(key, worker, epoch, outcome, message)
        return await self._for_worker(
            lambda: self._started.submit(item), f"reporting the start of {key!r}", locked=True
        )

    async def report_stopped(self, key: str, worker: str, epoch: int) -> None:
        item = Stopped(key, worker, epoch)
        await self._for_worker(lambda: self._stopped.submit(item), f"reporting the stop of {key!r}")

    async def take_notes(self, key: str, worker: str, epoch: int) -> list[bytes]:
        # The notes are deleted as they are taken: a retry after a lost reply must get them
        # from the first call's memo, which outlives every retry (bounded by valid_for).
        request = next(self._requests)
        keep_ms = int((self._clock.valid_for() + MEMO_MARGIN) * 1000)
        return await self._for_worker(
            lambda: self._scripts.take_notes(key, worker, epoch, request, keep_ms),
            f"taking notes of {key!r}",
            locked=True,
        )

    async def _for_worker(
        self, call: Callable[[], Awaitable[T]], what: str, locked: bool = False
    ) -> T:
        """A worker's call to Redis, retried while its lease could still hold (one TTL). A
        call made under a key's lock (``locked``) is retried only while the lease is valid,
        so the fence's stop() of that key never waits past the fence time."""
        limit = self._clock.valid_for() if locked else self._opts.worker_ttl
        if limit <= 0:
            raise RedisUnavailableError(f"{what}: not sent, this node is fenced")
        return await retry_transient(call, time.monotonic() + limit, what)

    async def _flush_started(self, items: Sequence[Started]) -> list[str]:
        verdicts = await self._scripts.started(items)
        for item, verdict in zip(items, verdicts, strict=True):
            if verdict.action == "requeue":
                self._due.at(item.key, item.epoch, verdict.retry_in_ms)
        return [verdict.action for verdict in verdicts]

    async def _flush_stopped(self, items: Sequence[Stopped]) -> list[int]:
        if await self._scripts.stopped(items):  # jobs wait for the slots freed here
            self._members.on_slot_freed()
        return [1] * len(items)

    # -- for the lease, the inbox router and the reconciler ---------------------------------

    def worker_ids(self) -> list[str]:
        return list(self.workers)

    def active_workers(self) -> list[Worker]:
        return [w for w in self.workers.values() if w._accepting]

    def fence(self) -> list[FencedJob]:
        """Start stopping every job here (no reports: the records decide what comes next)."""
        for hook in self.fence_hooks:
            hook()
        return [
            FencedJob(job, asyncio.ensure_future(worker._stop_local(job.key, job.epoch)))
            for worker in self.workers.values()
            for job in worker.jobs()
        ]

    async def refresh_ring(self) -> None:
        if not await self._members.refresh() or not self.workers:
            return
        # A ring of another pool life moves nothing (the heartbeat settles the life first),
        # nor does a fenced node (its jobs are being stopped; they are routed on renewal).
        if self._members.ring.incarnation == self.life.id and self._clock.valid():
            self.spawn(self._members.rebalance(self.active_workers()), "rebalancing")

    def jobs(self) -> list[Job]:
        """Every job running (or starting) here."""
        return [job for worker in self.workers.values() for job in worker.jobs()]

    async def _join(self, worker_id: str, capacity: int | None) -> tuple[str, int] | None:
        """Register a worker: the version and server time, or None when shutting down."""
        joined = await self._scripts.join(worker_id, self._opts.ttl_ms, self.life.id, capacity)
        if joined == "changed":
            raise LifeChanged(f"pool {self._pool_name!r} changed its life meanwhile")
        return None if joined == "shutdown" else joined

    # -- membership of the workers ---------------------------------------------------------

    async def add(self, handler: JobHandler, capacity: object) -> Worker:
        capacity = check_capacity(capacity)
        async with self._registration:
            worker_id = f"{self._node_id}.{next(self._seq)}"
            joined = await self._join(worker_id, capacity)
            if joined is None:
                raise PoolShuttingDownError(f"pool {self._pool_name!r} is shutting down")
            worker = Worker(worker_id, from_ms(joined[1]), handler, self, self._opts, self.threads)
            worker.capacity = capacity
            self.workers[worker_id] = worker
        await self.refresh_ring()
        return worker

    async def remove(self, workers: Sequence[Worker]) -> None:
        """Stop the workers' jobs here, then leave the pool with all of them in one script
        call, so their jobs go only to workers that stay."""
        for worker in workers:
            worker._retire()  # from now on no start, and no rejoin, for it
        await asyncio.gather(*(worker._stop_all() for worker in workers))
        async with self._registration:
            ids = [worker.id for worker in workers]
            try:
                await retry_transient(
                    lambda: self._scripts.leave(ids),
                    time.monotonic() + self._opts.worker_ttl,
                    f"removing workers {', '.join(ids)}",
                )
            finally:
                # Gone from here also when they could not leave (Redis unreachable): the
                # heartbeat no longer renews their leases, which expire, and the reap hands
                # their jobs (stopped here above) on, instead of leaving them recorded on
                # retired workers that run nothing.
                for worker_id in ids:
                    self.workers.pop(worker_id, None)
        await self.refresh_ring()

    def close(self) -> None:
        """The node leaves: requeued jobs still in their backoff are routed by the other
        nodes' heartbeats instead."""
        self._due.close()

    async def stop_all(self) -> None:
        """Retire every worker and stop its jobs, keeping the records (a pool shutdown)."""
        for worker in self.workers.values():
            worker._retire()
        await asyncio.gather(*(worker._stop_all() for worker in self.workers.values()))

    def rejoin(self, missing: Sequence[str]) -> None:
        """Workers reaped as dead while this node was cut off come back under new ids, in the
        background: the heartbeat that found them never waits for user code."""
        for old_id in missing:
            worker = self.workers.get(old_id)
            if worker is not None and old_id not in self._rejoining:
                self._rejoining.add(old_id)
                self.spawn(self._rejoin(old_id, worker), f"rejoining worker {old_id}")

    async def _rejoin(self, old_id: str, worker: Worker) -> None:
        try:
            async with self._registration:
                if self.workers.get(old_id) is not worker or worker.is_stopped():
                    return  # removed meanwhile: it must not come back
                stale = worker._running_keys()
                new_id = f"{self._node_id}.{next(self._seq)}"
                # If this fails the worker stays under its old id: the next beat lists it again
                # (also when the pool's life changed: that beat settles it first).
                joined = await self._join(new_id, worker.capacity)
                del self.workers[old_id]
                if joined is None:
                    worker._retire()
                else:
                    self.log.warning("worker was declared dead; rejoined", old=old_id, new=new_id)
                    worker._rename(new_id)
                    self.workers[new_id] = worker
            await self.refresh_ring()
            # The reap released these jobs; stop them here. Until a stop() returns, this
            # worker takes no new start of that key (it still has the key locally).
            await asyncio.gather(*(worker._stop_local(key, epoch) for key, epoch in stale))
        finally:
            self._rejoining.discard(old_id)

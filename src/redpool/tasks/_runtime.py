"""A node's tasks layer: its tasks inbox (starts, cancels, pauses, resumes and suspends for
its task workers, replies to its waiters), the upkeep loop that re-places the runs of dead
workers, fires due jobs and tells its workers again of requests still pending, and the
retention loop that purges finished jobs. Created on a node's first tasks call."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgpack
import redis.asyncio as aioredis
from structlog.typing import FilteringBoundLogger

from .._lease import LeaseClock
from .._options import Options
from .._redis import Boundary, Outage, reader_client, reader_timeout, retry_transient
from .._tasks import cancel, supervise, wait_or_timeout
from ..errors import PoolError
from ._holds import HoldWaits
from ._keys import TaskKeys
from ._runner import TaskWorker
from ._scripts import TaskScripts

T = TypeVar("T")

UPKEEP_LIMIT = 100  # placements per upkeep call
FIRE_LIMIT = 200  # due jobs placed per task_fire call
RETAIN_BATCH = 100  # finished jobs purged per task_retain call (~10 commands each)
_CONTROLS = frozenset({"cancel", "pause", "resume", "suspend"})  # inbox messages to an owner
_REQUESTS = {"canceling": "cancel", "pausing": "pause", "suspending": "suspend"}
TRIM_EVERY = 100  # read inbox entries between two XTRIMs
DRAIN_GRACE = 5.0  # how long close() lets canceled runs report


class TaskLayer:
    def __init__(
        self,
        node_id: str,
        client: aioredis.Redis,
        keys: TaskKeys,
        options: Options,
        clock: LeaseClock,
        outage: Outage,
        log: FilteringBoundLogger,
        boundary: Boundary,
    ) -> None:
        self.node_id = node_id
        self.boundary = boundary
        self.client = client
        self.keys = keys
        self.scripts = TaskScripts(client, keys)
        self.opts = options
        self.clock = clock
        self.log = log
        self._outage = outage
        self.workers: dict[str, TaskWorker] = {}
        self.hold_waits = HoldWaits(node_id)
        self._seq = itertools.count(1)
        self._requests = itertools.count(1)
        self._waiters: dict[int, asyncio.Future[Reply]] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._reader: aioredis.Redis | None = None
        self._cursor = "0-0"
        self._untrimmed = 0  # entries read since the inbox was last trimmed
        self._wake = asyncio.Event()
        self._due_at: float | None = None  # monotonic time of the earliest known due job
        self._beat_at = 0.0  # monotonic time of the next full upkeep
        self._suspects: set[tuple[str, str, int]] = set()  # runs own workers did not have
        self._started = False

    async def start(self) -> None:
        """Create this node's tasks inbox (first upkeep) and start reading it."""
        if self._started:
            return
        self._started = True
        await self.upkeep()
        self._reader = reader_client(self.client, self.opts.job_sink_block)
        self._loops.append(supervise("tasks-inbox", self._read, self._outage))
        self._loops.append(supervise("tasks-upkeep", self._upkeep_step, self._outage))
        self._loops.append(supervise("tasks-retain", self._retain_step, self._outage))

    def fence(self) -> None:
        """The node's lease may expire for the others: stop every run here now. Their reports
        go through only if the records still name them (the lease held after all)."""
        for worker in self.workers.values():
            worker.stop_all("interrupted")

    async def close(self) -> None:
        for worker in list(self.workers.values()):
            await self.remove_worker(worker)
        await cancel(self._loops)
        self._loops.clear()
        for waiter in self._waiters.values():
            waiter.cancel()
        if self._reader is not None:
            await self._reader.aclose()
        await self.scripts.aclose()

    def memo(self) -> tuple[str, int]:
        """A request id unique in the pool and how long Redis keeps its call's memo (ms): a
        retry after a lost reply then answers what the first call did (task_submit,
        task_cancel). The memo outlives every retry of ``call``."""
        ttl_ms = round(4 * self.opts.dispatch_timeout * 1000)
        return f"{self.node_id}:{next(self._requests)}", ttl_ms

    async def call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        """A user call's Redis work, retried through an outage (as dispatch_job) and then
        RedisUnavailableError. Each script it runs must be safe to run twice."""
        return await retry_transient(fn, time.monotonic() + self.opts.dispatch_timeout, what)

    # -- workers ----------------------------------------------------------------------------

    async def add_worker(self, make: Callable[[str], TaskWorker]) -> TaskWorker:
        worker = make(f"{self.node_id}.t{next(self._seq)}")
        self.workers[worker.id] = worker
        handed = await self.scripts.join(worker.id, worker.concurrency, worker.queues)
        if handed < 0:
            del self.workers[worker.id]
            raise PoolError(
                "the task worker could not join: the pool shuts down, or this node's lease "
                "lapsed (it renews at its next heartbeat); try again"
            )
        return worker

    async def drain(self, seconds: float) -> None:
        """Place no new runs here and let the runs under way finish, for up to ``seconds``."""
        for worker in self.workers.values():
            await self.scripts.join(worker.id, worker.concurrency, worker.queues, draining=True)
        done = [d for worker in self.workers.values() for d in worker.done_events()]
        if done:
            await asyncio.wait([asyncio.ensure_future(d.wait()) for d in done], timeout=seconds)

    async def remove_worker(self, worker: TaskWorker) -> None:
        """Stop its runs (they go back to their queues without charging an attempt), then
        deregister it. Placed no new run first: a stopped run put back in its queue must
        not come back here (to a new child, killed below, for an attempt)."""
        with contextlib.suppress(Exception):  # Redis out of reach: the lease decides
            await self.scripts.join(worker.id, worker.concurrency, worker.queues, draining=True)
        done = worker.stop_all("shutdown")
        if done:
            await asyncio.wait([asyncio.ensure_future(d.wait()) for d in done], timeout=DRAIN_GRACE)
        await worker.close()  # no run's code goes on once others may start it
        await self.scripts.leave(worker.id)
        self.workers.pop(worker.id, None)

    # -- waiting ----------------------------------------------------------------------------

    def waiter(self) -> tuple[int, asyncio.Future[Reply]]:
        """A request id and the future a 'done' reply to it resolves."""
        request = next(self._requests)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiters[request] = future
        future.add_done_callback(lambda _: self._waiters.pop(request, None))
        return request, future

    def due_in(self, delay: float) -> None:
        """A job is due in ``delay`` seconds: run the upkeep then (on this node too)."""
        at = time.monotonic() + delay
        if self._due_at is None or at < self._due_at:
            self._due_at = at
            self._wake.set()

    # -- loops ------------------------------------------------------------------------------

    async def upkeep(self) -> None:
        self._beat_at = time.monotonic() + self.opts.heartbeat_interval
        upkeep = await self.scripts.maintain(
            self.node_id, self.opts.ttl_ms, UPKEEP_LIMIT, list(self.workers)
        )
        if upkeep.interrupted:
            self.log.info("interrupted the runs of dead task workers", runs=upkeep.interrupted)
        self._arm(upkeep.next_due_ms, upkeep.now_ms)
        for worker_id in upkeep.unregistered:
            worker = self.workers.get(worker_id)
            if worker is not None and self.clock.valid():
                self.log.warning("task worker was reaped while cut off; joining again")
                await self.scripts.join(worker.id, worker.concurrency, worker.queues)
        by_worker: dict[str, list[tuple[str, int]]] = {}
        for key, worker_id, epoch in upkeep.untaken:
            by_worker.setdefault(worker_id, []).append((key, epoch))
        for worker_id, starts in by_worker.items():
            if worker_id in self.workers:
                await self.workers[worker_id].take(starts)
        for key, worker_id, epoch, status in upkeep.pending:  # told again: level-triggered
            if worker_id in self.workers:
                self.workers[worker_id].control(key, epoch, _REQUESTS[status])
        await self._reconcile(upkeep.owned)

    async def _reconcile(self, owned: list[tuple[str, str, int]]) -> None:
        """Hand back the runs the records give an own worker that it does not have (a lost
        claim reply, a report that gave up, a run its runner lost): level-triggered, so
        no lost message or reply leaves a job on a live worker for good. A run is handed back
        once two upkeeps in a row found it missing here (never racing a claim or a report
        still under way), and only at that epoch (lua/task_hand_back.lua)."""
        by_worker: dict[str, list[tuple[str, int]]] = {}
        for key, worker_id, epoch in owned:
            by_worker.setdefault(worker_id, []).append((key, epoch))
        suspects: set[tuple[str, str, int]] = set()
        for worker_id, runs in by_worker.items():
            worker = self.workers.get(worker_id)
            if worker is None:
                continue
            missing = {(worker_id, k, e) for k, e in worker.unknown(runs)}
            confirmed = missing & self._suspects
            suspects |= missing - confirmed
            if confirmed:
                handed = await self.scripts.hand_back(worker_id, [(k, e) for _, k, e in confirmed])
                self.log.warning(
                    "handed back runs the records gave this worker but it did not have",
                    worker=worker_id,
                    runs=handed,
                )
        self._suspects = suspects

    def _arm(self, next_due_ms: int, now_ms: int) -> None:
        """The timer of the earliest due job, from a script's answer (server times)."""
        self._due_at = (
            None if next_due_ms < 0 else time.monotonic() + max(0, next_due_ms - now_ms) / 1000
        )

    async def _upkeep_step(self) -> None:
        """The full upkeep once per heartbeat interval; in between, the due jobs fire at the
        earliest due time (task_fire: the delayed set only, so a node with many schedules
        pays no reaping and no scans per timer). A wake (a nearer due time) looks again."""
        now = time.monotonic()
        delay = self._beat_at - now
        if self._due_at is not None:
            delay = min(delay, self._due_at - now)
        if delay > 0:
            await wait_or_timeout(self._wake, delay)
        elif time.monotonic() >= self._beat_at:
            await self.upkeep()
        else:
            fired = await self.scripts.fire(FIRE_LIMIT)
            self._arm(fired.next_due_ms, fired.now_ms)

    async def retain(self) -> int:
        """Purge finished jobs past their keep time or beyond ``max_retained``, one bounded
        batch per script call, until a batch is not full; returns how many."""
        purged, more = 0, True
        while more:
            batch = await self.scripts.retain(RETAIN_BATCH, self.opts.max_retained)
            purged += batch.expired + batch.evicted
            more = batch.more
        return purged

    async def _retain_step(self) -> None:
        await asyncio.sleep(self.opts.heartbeat_interval)
        purged = await self.retain()
        if purged:
            self.log.debug("purged finished task jobs", jobs=purged)

    async def _read(self) -> None:
        assert self._reader is not None
        block = self.opts.job_sink_block
        reply = await asyncio.wait_for(
            self._reader.xread(
                {self.keys.inbox(self.node_id): self._cursor}, count=500, block=int(block * 1000)
            ),
            reader_timeout(block),
        )
        if not reply:
            return
        entries = reply[0][1]
        self._cursor = entries[-1][0].decode()
        await self._dispatch([_message(fields) for _, fields in entries])
        # Read entries are trimmed once TRIM_EVERY have gathered, not after every read: with
        # one start per read (sequential submits) the XTRIM was a round trip of its own for
        # each task; the inbox holds at most that many read entries more.
        self._untrimmed += len(entries)
        if self._untrimmed >= TRIM_EVERY:
            await self.client.xtrim(self.keys.inbox(self.node_id), minid=self._cursor)
            self._untrimmed = 0

    async def _dispatch(self, messages: list[list[Any]]) -> None:
        starts: dict[str, list[tuple[str, int]]] = {}
        for msg in messages:
            kind = msg[0] if msg else None
            if kind == "start" and len(msg) == 4:
                starts.setdefault(str(msg[2]), []).append((str(msg[1]), int(msg[3])))
            elif kind in _CONTROLS and len(msg) == 4:
                if str(msg[2]) in self.workers:
                    self.workers[str(msg[2])].control(str(msg[1]), int(msg[3]), kind)
            elif kind == "free" and len(msg) == 2:
                self.hold_waits.wake(str(msg[1]))
            elif kind == "due" and len(msg) == 2:  # a schedule's, now the earliest of all
                self.due_in(int(msg[1]) / 1000)
            elif kind == "done" and len(msg) >= 4:
                future = self._waiters.get(int(msg[1]))
                if future is not None and not future.done():
                    future.set_result(_reply(msg))
            elif kind != "hello":
                self.log.warning("unknown tasks inbox message skipped", message=repr(msg))
        jobs: list[Awaitable[None]] = [
            self.workers[w].take(s) for w, s in starts.items() if w in self.workers
        ]
        await asyncio.gather(*jobs)


@dataclass(frozen=True, slots=True)
class Reply:
    """A 'done' reply to a waiter: how the generation ended, with its result or error when
    small enough to ride along (None: read it)."""

    status: str
    generation: int
    value: bytes | None


def _reply(msg: list[Any]) -> Reply:
    if len(msg) < 6:  # 'deleted' replies carry no outcome
        return Reply(str(msg[3]), 0, None)
    value = msg[5]
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")
    return Reply(str(msg[3]), int(msg[4]), value if isinstance(value, bytes) else None)


def _message(fields: dict[bytes, bytes]) -> list[Any]:
    try:
        # Lua packs every string as str: a result's bytes come back intact this way.
        msg = msgpack.unpackb(fields[b"m"], raw=False, unicode_errors="surrogateescape")
    except Exception:  # garbage written by hand: skipped (logged by the caller)
        return ["corrupt"]
    return msg if isinstance(msg, list) else ["corrupt"]

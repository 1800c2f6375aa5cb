"""Leases and fencing: the heartbeat loop of a node.

Each beat (heartbeat.lua) renews the node's and its workers' leases in Redis server time,
reaps expired leases and redelivers overdue starts. Whether a lease may be reaped is decided
in the script from the pool's own beats (an amnesty after any gap in them), never from this
node's view: a beat queued before an outage or a stall reaps nothing after it.

Locally the node tracks when its lease could run out for the others: a renewal sent at
monotonic time ``t`` makes the lease valid until at least ``t + ttl`` on the server (the
server stamps it later than ``t``), so starting to stop every job at ``t + fence_after``
leaves stop() the rest of the TTL to finish before any other worker can be handed one.

No user code runs in this loop: fencing starts the stop() calls and returns, and the jobs it
stopped are routed again by a separate task once their stop() returned.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from structlog.typing import FilteringBoundLogger

from ._lifecycle import PoolLife
from ._membership import Membership
from ._options import Options
from ._scripts import Beat, Scripts
from ._tasks import wait_or_timeout, within
from ._types import Job

ROUTE_LIMIT = 500


class LeaseClock:
    """What this node's last successful beat says about its lease; asked before any job
    starts here and by ``Job.is_owned()``."""

    def __init__(self) -> None:
        self.fence_at = 0.0  # monotonic time at which the jobs here must stop
        self.fenced = False
        self.server_offset_ms = 0.0

    def valid(self) -> bool:
        """True while this node's jobs may run: the lease cannot have expired for others."""
        return not self.fenced and time.monotonic() < self.fence_at

    def valid_for(self) -> float:
        """Seconds this node's jobs may still run unless the lease is renewed."""
        return 0.0 if self.fenced else max(0.0, self.fence_at - time.monotonic())

    def server_now_ms(self) -> float:
        """The Redis server's clock now, estimated from the last beat (within its RTT)."""
        return time.monotonic() * 1000 + self.server_offset_ms


@dataclass(frozen=True, slots=True)
class FencedJob:
    """A job fencing stopped: routed again (CAS on its epoch) once ``stopped`` is done."""

    job: Job
    stopped: asyncio.Future[bool]


class FenceHost(Protocol):
    """What the lease needs from the node's local workers (``_host.Host``)."""

    def worker_ids(self) -> list[str]: ...

    def fence(self) -> list[FencedJob]: ...

    def spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None: ...


class Lease:
    def __init__(
        self,
        node_id: str,
        clock: LeaseClock,
        host: FenceHost,
        members: Membership,
        scripts: Scripts,
        options: Options,
        log: FilteringBoundLogger,
        on_beat: Callable[[Beat], Awaitable[None]],
        inbox_cursor: Callable[[], str],
        life: PoolLife,
        on_life_changed: Callable[[Beat, list[Job]], None],
    ) -> None:
        self._node_id = node_id
        self._clock = clock
        self._host = host
        self._members = members
        self._scripts = scripts
        self._opts = options
        self._log = log
        self._on_beat = on_beat
        self._inbox_cursor = inbox_cursor
        self._life = life
        self._on_life_changed = on_life_changed
        self._trimmed = ""  # inbox cursor passed to the last successful beat's trim
        self._timer: asyncio.TimerHandle | None = None
        self._fenced_jobs: list[FencedJob] = []
        self._wake = asyncio.Event()
        self._next_in = options.heartbeat_interval
        members.on_slot_freed = self.wake

    def wake(self) -> None:
        """Beat now instead of at the next interval."""
        self._wake.set()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    async def beat(self, timeout: float | None = None) -> Beat:
        """Send one heartbeat and act on its answer."""
        sent = time.monotonic()
        cursor = self._inbox_cursor()
        beat = await within(
            self._scripts.heartbeat(
                self._node_id,
                self._host.worker_ids(),
                self._opts.ttl_ms,
                self._opts.grace_ms,
                "" if cursor == self._trimmed else cursor,
                ROUTE_LIMIT,
                self._life.id,
            ),
            timeout,
        )
        if beat.ended:  # nothing was renewed: this node must not act in the pool again
            self._on_life_changed(beat, [])
            return beat
        self._life.adopt(beat.incarnation)
        received = time.monotonic()
        self._trimmed = cursor
        # The server stamped ``now_ms`` between send and receipt: take the midpoint.
        self._clock.server_offset_ms = beat.now_ms - (sent + received) * 500
        self._clock.fence_at = sent + self._opts.fence_after
        self.close()
        self._timer = asyncio.get_running_loop().call_at(self._clock.fence_at, self._fence)
        # Beat again just after the next lease may be reaped (a dead worker's jobs move one
        # TTL after its last renewal), or after one interval, whichever comes first.
        if beat.reap_at_ms >= 0:
            self._next_in = max(0.005, (beat.reap_at_ms - beat.now_ms) / 1000 + 0.005)
        else:
            self._next_in = self._opts.heartbeat_interval
        if beat.lost:  # the jobs fenced here were lost too: reported, not routed again
            fenced, self._fenced_jobs = self._fenced_jobs, []
            self._on_life_changed(beat, [f.job for f in fenced])
        if self._clock.fenced:
            self._clock.fenced = False
            if self._host.worker_ids():  # fencing only matters to a node with workers
                self._log.info("lease renewed again; resuming")
            jobs, self._fenced_jobs = self._fenced_jobs, []
            if jobs:
                self._host.spawn(self._resume(jobs), "routing the fenced jobs again")
        await self._on_beat(beat)
        return beat

    def fence(self, reason: str) -> None:
        """Fence now, before the timer would, if ``reason`` (a stalled event loop) ran into
        the fence time: the lease may have expired for the others meanwhile. A stall that
        ended before it left the lease (valid until at least ``sent + ttl``) and the whole
        stop budget intact: fencing then only interrupted the runs here for nothing."""
        if self._clock.valid():
            self._log.warning(f"{reason}; the lease still holds: not fencing")
            return
        self._fence(reason)

    def _fence(self, reason: str | None = None) -> None:
        if self._clock.fenced:
            return
        self._clock.fenced = True
        if reason is None:
            if self._host.worker_ids():  # a client-only node hosts nothing to stop
                self._log.warning("lease not renewed in time; fencing: stopping all jobs here")
        else:
            self._log.error(f"{reason}; fencing: stopping all jobs here")
        self._fenced_jobs += self._host.fence()

    async def _resume(self, jobs: Sequence[FencedJob]) -> None:
        """Route fenced jobs again as their stop() calls return, most likely back here. The
        lease held, so their records still name these assignments (the epoch CAS fails for
        any that moved meanwhile). A stop() that never returns holds back only its own job."""
        waiting = {job.stopped: job for job in jobs}
        while waiting:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            moves = [(f.job.key, f.job.epoch) for f in map(waiting.pop, done)]
            await self._members.assign(moves)

    async def step(self) -> None:
        """One iteration of the heartbeat loop (run under supervise())."""
        await self.beat(timeout=self._opts.heartbeat_interval)
        await wait_or_timeout(self._wake, min(self._opts.heartbeat_interval, self._next_in))

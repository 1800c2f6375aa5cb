"""Leases and fencing: the heartbeat loop of a node.

Each beat (heartbeat.lua) renews the node's and its workers' leases in Redis server time,
reaps expired leases and redelivers overdue starts. It reaps only when the previous beat
succeeded on schedule: after an outage the other nodes get one interval to renew first.

Locally the node tracks when its lease could run out for the others: a renewal sent at
monotonic time ``t`` makes the lease valid until at least ``t + ttl`` on the server (the
server stamps it later than ``t``), so starting to stop every job at ``t + fence_after``
leaves stop() the rest of the TTL to finish before any other worker can be handed one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from structlog.typing import FilteringBoundLogger

from ._options import Options
from ._scripts import Beat, Scripts
from ._tasks import wait_or_timeout, within

ROUTE_LIMIT = 500
# Membership and shutdown are announced on the event stream; every third beat (once per TTL)
# reads them from Redis too, so a missed event is made up within a TTL.
META_EVERY = 3


class LeaseHost(Protocol):
    log: FilteringBoundLogger

    @property
    def id(self) -> str: ...

    def worker_ids(self) -> list[str]: ...

    def inbox_trim_id(self) -> str: ...

    async def on_beat(self, beat: Beat) -> None: ...

    async def on_fence(self) -> None: ...

    async def on_unfence(self) -> None: ...


class Lease:
    def __init__(self, host: LeaseHost, scripts: Scripts, options: Options) -> None:
        self._host = host
        self._scripts = scripts
        self._opts = options
        self._fence_at = 0.0
        self._fenced = False
        self._last_ok: float | None = None
        self._server_offset_ms = 0.0
        self._beats = 0
        self._timer: asyncio.TimerHandle | None = None
        self._fencing: asyncio.Task[None] | None = None  # held so the task is not collected
        self._wake = asyncio.Event()
        self._next_expiry_in = options.heartbeat_interval

    def valid(self) -> bool:
        """True while this node's jobs may run: the lease cannot have expired for others."""
        return not self._fenced and time.monotonic() < self._fence_at

    def server_now_ms(self) -> float:
        """The Redis server's clock now, estimated from the last beat (within its RTT)."""
        return time.monotonic() * 1000 + self._server_offset_ms

    def valid_for(self) -> float:
        """Seconds this node's jobs may still run unless the lease is renewed."""
        return 0.0 if self._fenced else max(0.0, self._fence_at - time.monotonic())

    @property
    def fenced(self) -> bool:
        return self._fenced

    def wake(self) -> None:
        """Beat now instead of at the next interval."""
        self._wake.set()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    async def beat(self, timeout: float | None = None) -> Beat:
        """Send one heartbeat and act on its answer."""
        sent = time.monotonic()
        # Reap only when the previous beat succeeded on schedule: right after an outage the
        # other nodes get one interval to renew before anyone is declared dead.
        on_schedule = self._last_ok is not None and (
            sent - self._last_ok < 1.5 * self._opts.heartbeat_interval
        )
        beat = await within(
            self._scripts.heartbeat(
                self._host.id,
                self._host.worker_ids(),
                self._opts.ttl_ms,
                self._opts.grace_ms,
                self._host.inbox_trim_id(),
                ROUTE_LIMIT,
                on_schedule,
                self._beats % META_EVERY == 0,
            ),
            timeout,
        )
        received = time.monotonic()
        self._beats += 1
        self._last_ok = sent
        # The server stamped ``now_ms`` between send and receipt: take the midpoint.
        self._server_offset_ms = beat.now_ms - (sent + received) * 500
        self._fence_at = sent + self._opts.fence_after
        self.close()
        self._timer = asyncio.get_running_loop().call_at(self._fence_at, self._fence)
        if beat.next_expiry_ms >= 0 and on_schedule:
            self._next_expiry_in = max(0.005, (beat.next_expiry_ms - beat.now_ms) / 1000 + 0.005)
        else:  # this beat did not reap: give the others a whole interval to renew first
            self._next_expiry_in = self._opts.heartbeat_interval
        if self._fenced:
            self._fenced = False
            self._host.log.info("lease renewed again; resuming")
            await self._host.on_unfence()
        await self._host.on_beat(beat)
        return beat

    def _fence(self) -> None:
        if self._fenced:
            return
        self._fenced = True
        self._host.log.warning("lease not renewed in time; fencing: stopping all jobs here")
        self._fencing = asyncio.create_task(self._host.on_fence(), name="redpool:fence")

    async def step(self) -> None:
        """One iteration of the heartbeat loop (run under supervise())."""
        await self.beat(timeout=self._opts.heartbeat_interval)
        await wait_or_timeout(self._wake, min(self._opts.heartbeat_interval, self._next_expiry_in))

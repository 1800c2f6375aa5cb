"""Membership as this node sees it: the ring at the pool's current version, routing jobs by it
(bounded-load placement, decided by the scripts), and handing the jobs that a joining worker
should take over to it (rebalancing)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence

import redis.asyncio as aioredis
from structlog.typing import FilteringBoundLogger

from ._keys import Keys
from ._options import Options
from ._routing import Ring, load_ring
from ._scripts import Scripts
from ._worker import Worker


class Membership:
    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        scripts: Scripts,
        options: Options,
        log: FilteringBoundLogger,
    ) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts
        self._opts = options
        self._log = log
        self._lock = asyncio.Lock()
        self.ring = Ring()
        self._joined: set[str] = set()  # workers new since the last rebalance
        self.on_slot_freed: Callable[[], None] = lambda: None
        """Set by the lease: a beat now, whose overdue scan routes the jobs waiting for room."""

    async def refresh(self) -> bool:
        """Load the current ring; True when it changed."""
        async with self._lock:
            ring, corrupt = await load_ring(self._client, self._keys)
            for worker_id in corrupt:
                self._log.warning("skipping corrupt worker record", worker=worker_id)
            if (ring.version, ring.workers, ring.incarnation) == (
                self.ring.version,
                self.ring.workers,
                self.ring.incarnation,
            ):
                return False
            self._joined |= ring.workers.keys() - self.ring.workers.keys()
            self.ring = ring
            return True

    async def assign(self, jobs: Sequence[tuple[str, int]], move: bool = False) -> None:
        """Route jobs (key, epoch) by the ring: each to the first worker of its ring order with
        room (decided in the script); compare-and-set on the epoch, so when several nodes route
        one job at once exactly one succeeds. A job no worker has room for stays queued. A job
        that still has a worker (fenced, or its report lost) restarts there, unless ``move``."""
        for _ in range(3):
            ring = self.ring
            if not ring.workers:
                return
            moves = [(key, epoch, ring.candidates(key)) for key, epoch in jobs]
            eps, grace = self._opts.load_epsilon, self._opts.grace_ms
            status, moved, targets = await self._scripts.assign(ring, eps, grace, moves, move)
            if moved:
                self._log.info("assigned jobs", moved=moved, of=len(moves), to=sorted(targets))
            if status != "stale":
                return
            await self.refresh()
        self._log.info(
            "membership kept changing; the heartbeat or the reconciler routes these later"
        )

    async def rebalance(self, workers: Sequence[Worker]) -> None:
        """Hand to the workers that joined the jobs here that they should take: those with a
        newcomer ahead of their owner in their ring order, as many as the newcomers have room
        for (their loads read once); stop() here first, then the script places each."""
        ring = self.ring
        joined, self._joined = self._joined & ring.workers.keys(), set()
        wanted = [
            (ahead, worker, key, epoch)
            for worker in workers
            for key, epoch in worker._running_keys()
            if (ahead := _newcomers_ahead(ring.order(key), worker.id, joined))
        ]
        if not wanted:
            return
        room = await self._room(ring, joined, [w.id for w in workers])
        moves = []
        # Nearest newcomer first: a key whose first choice joined gets the room before a key
        # for which it is a fallback.
        for ahead, worker, key, epoch in sorted(wanted, key=lambda m: m[0][0][0]):
            target = next((w for _, w in ahead if room[w] > 0), None)
            if target is not None:
                room[target] -= 1
                moves.append((worker, key, epoch))
        if not moves:
            return
        stopped = await asyncio.gather(*(w._stop_local(k, e) for w, k, e in moves))
        handed = [(k, e) for (_, k, e), ok in zip(moves, stopped, strict=True) if ok]
        if handed:
            await self.assign(handed, move=True)
            owners = sorted({w.id for w, _, _ in moves})
            self._log.info("rebalanced", moved=len(handed), version=ring.version, away_from=owners)

    async def _room(self, ring: Ring, joined: set[str], local: list[str]) -> dict[str, int]:
        """This node's share of each newcomer's free slots under its limit (capacity and load
        bound), from the pool's loads now. Every node hands over at once, so each takes the
        share of its jobs in the pool (rounded up): few moves end back where they began. An
        estimate: the script decides each placement."""
        loads = {entry.worker: entry.job_count for entry in await self._scripts.pool_workers()}
        jobs = sum(loads.values())
        bound = math.ceil((1 + self._opts.load_epsilon) * jobs / len(ring.workers) - 1e-9)
        share = sum(loads.get(w, 0) for w in local) / max(jobs, 1)
        room = {}
        for worker in joined:
            cap = ring.capacities.get(worker)
            free = min(bound, cap if cap is not None else bound) - loads.get(worker, 0)
            room[worker] = math.ceil(free * share)
        return room


def _newcomers_ahead(order: Sequence[str], owner: str, joined: set[str]) -> list[tuple[int, str]]:
    """The workers of ``joined`` before ``owner`` in a key's ring order, with their rank."""
    ahead = []
    for rank, worker in enumerate(order):
        if worker == owner:
            break
        if worker in joined:
            ahead.append((rank, worker))
    return ahead

"""Membership as this node sees it: the ring at the pool's current version, routing jobs to
their ring owners, and handing over the jobs whose owner changed (rebalancing)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

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
            self.ring = ring
            return True

    async def assign(self, jobs: Sequence[tuple[str, int]]) -> None:
        """Route jobs (key, epoch) to their ring owners; compare-and-set on the epoch, so when
        several nodes route one job at once exactly one succeeds."""
        for _ in range(3):
            ring = self.ring
            if not ring.workers:
                return
            moves = [(key, epoch, ring.route(key)) for key, epoch in jobs]
            status, moved = await self._scripts.assign(ring.version, self._opts.grace_ms, moves)
            if status == "ok" and moved != "0":
                workers = sorted({target for _, _, target in moves})
                self._log.info("assigned jobs", moved=int(moved), of=len(moves), to=workers)
            if status != "stale":
                return
            await self.refresh()
        self._log.info(
            "membership kept changing; the heartbeat or the reconciler routes these later"
        )

    async def rebalance(self, workers: Sequence[Worker]) -> None:
        """Hand each job whose ring owner changed to its new owner: stop() here first."""
        ring = self.ring
        moves = [
            (worker, key, epoch)
            for worker in workers
            for key, epoch in worker._running_keys()
            if ring.route(key) != worker.id
        ]
        if not moves:
            return
        stopped = await asyncio.gather(*(w._stop_local(k, e) for w, k, e in moves))
        handed = [(k, e) for (_, k, e), ok in zip(moves, stopped, strict=True) if ok]
        if handed:
            await self.assign(handed)
            owners = sorted({w.id for w, _, _ in moves})
            self._log.info("rebalanced", moved=len(handed), version=ring.version, away_from=owners)

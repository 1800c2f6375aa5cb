"""Who owns which key: the ring of live workers (uhashring) at one membership version, and each
key's order of candidates on it for bounded-load placement (the scripts pick among them)."""

from __future__ import annotations

from collections.abc import Mapping

import redis.asyncio as aioredis
from uhashring import HashRing

from ._codec import CorruptEntryError, decode_worker
from ._keys import Keys

CANDIDATES = 8
"""Distinct workers of a key's ring order passed to the scripts; beyond them the walk goes on
through the rest of the ring in id order (rarely needed: each of the 8 must be full)."""


class Ring:
    """Consistent-hash routing over the workers registered at ``version``.

    Every node that loaded the same version computes the same order of workers for a key (its
    point on the ring, then clockwise), so only keys whose order changed move when a worker
    joins or leaves; admit and assign place a key on the first of them with room.
    """

    def __init__(
        self,
        version: str = "0",
        workers: Mapping[str, int] | None = None,
        incarnation: str = "",
        capacities: Mapping[str, int | None] | None = None,
    ) -> None:
        self.version = version
        self.incarnation = incarnation
        """The pool life this ring belongs to (after a loss of Redis's state, a new one)."""
        self.workers: dict[str, int] = dict(workers or {})
        """worker id -> created ms"""
        self.capacities: dict[str, int | None] = dict(capacities or {})
        """worker id -> most jobs at once (None or absent: unbounded)"""
        ids = sorted(self.workers)
        self.members = " ".join(ids)
        """The ring's workers, as the scripts take them."""
        self._ring = HashRing(nodes=ids) if ids else None
        self._points = [str(name) for _, name in self._ring.get_points()] if self._ring else []
        self._orders: dict[int, tuple[tuple[str, ...], str]] = {}  # ring position -> order

    def route(self, key: str) -> str:
        """The worker whose point follows ``key`` (its first candidate), or '' when empty."""
        return str(self._ring.get_node(key)) if self._ring is not None else ""

    def order(self, key: str) -> tuple[str, ...]:
        """The first ``CANDIDATES`` distinct workers clockwise from ``key``'s point."""
        return self._order(key)[0]

    def candidates(self, key: str) -> str:
        """``order(key)`` as the scripts take it ('' when the ring is empty)."""
        return self._order(key)[1]

    def _order(self, key: str) -> tuple[tuple[str, ...], str]:
        if self._ring is None:
            return (), ""
        pos = int(self._ring.get_node_pos(key))
        found = self._orders.get(pos)
        if found is None:
            want, points = min(CANDIDATES, len(self.workers)), self._points
            seen: list[str] = []
            for i in range(len(points)):
                name = points[(pos + i) % len(points)]
                if name not in seen:
                    seen.append(name)
                    if len(seen) == want:
                        break
            found = self._orders[pos] = (tuple(seen), " ".join(seen))
        return found


async def load_ring(client: aioredis.Redis, keys: Keys) -> tuple[Ring, list[str]]:
    """The current ring, read atomically, and the ids of corrupt worker entries it skipped.

    A worker belongs to the ring when it is registered and holds a lease; every node reads the
    same two structures at a version, so all agree.
    """
    pipe = client.pipeline(transaction=True)
    pipe.hgetall(keys.workers)
    pipe.zrange(keys.leases, 0, -1)
    pipe.hmget(keys.meta, ["version", "incarnation"])
    registered, leased, (version, incarnation) = await pipe.execute()
    live = {m.decode() for m in leased}
    workers: dict[str, int] = {}
    capacities: dict[str, int | None] = {}
    corrupt: list[str] = []
    for raw_id, raw in registered.items():
        worker_id = raw_id.decode("utf-8", "replace")
        try:
            record = decode_worker(raw)
        except CorruptEntryError:
            corrupt.append(worker_id)
            continue
        if worker_id in live:
            workers[worker_id] = record.created_ms
            capacities[worker_id] = record.capacity
    ring = Ring(
        version=version.decode() if version else "0",
        workers=workers,
        incarnation=incarnation.decode() if incarnation else "",
        capacities=capacities,
    )
    return ring, corrupt

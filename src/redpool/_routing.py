"""Who owns which key: the ring of live workers (uhashring) at one membership version."""

from __future__ import annotations

from collections.abc import Mapping

import redis.asyncio as aioredis
from uhashring import HashRing

from ._codec import CorruptEntryError, decode_worker
from ._keys import Keys


class Ring:
    """Consistent-hash routing over the workers registered at ``version``.

    Every node that loaded the same version routes every key to the same worker, so only keys
    whose owner changed move when a worker joins or leaves.
    """

    def __init__(
        self, version: str = "0", workers: Mapping[str, int] | None = None, incarnation: str = ""
    ) -> None:
        self.version = version
        self.incarnation = incarnation
        """The pool life this ring belongs to (after a loss of Redis's state, a new one)."""
        self.workers: dict[str, int] = dict(workers or {})
        """worker id -> created ms"""
        self._ring = HashRing(nodes=sorted(self.workers)) if self.workers else None

    def route(self, key: str) -> str:
        """The worker that owns ``key``, or '' when the pool has no worker."""
        return str(self._ring.get_node(key)) if self._ring is not None else ""


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
    corrupt: list[str] = []
    for raw_id, raw in registered.items():
        worker_id = raw_id.decode("utf-8", "replace")
        try:
            created = decode_worker(raw).created_ms
        except CorruptEntryError:
            corrupt.append(worker_id)
            continue
        if worker_id in live:
            workers[worker_id] = created
    ring = Ring(
        version=version.decode() if version else "0",
        workers=workers,
        incarnation=incarnation.decode() if incarnation else "",
    )
    return ring, corrupt

"""Distributed tickers: each tick of a named ticker goes to exactly one node that is waiting
for it. Tick k is due at start + k x interval on the Redis clock; the nodes that iterate race
for it in tick.lua, and a node that does not iterate takes no tick. A ticker whose entry Redis
lost is created again (tick.lua); only ``stop()`` (a marker entry) or the node closing ends
its iteration."""

from __future__ import annotations

import asyncio
from datetime import datetime

import msgpack
import redis.asyncio as aioredis
from structlog.typing import FilteringBoundLogger

from ._keys import Keys
from ._lifecycle import PoolLife
from ._redis import TRANSIENT, Boundary, Outage, awaitable, public
from ._scripts import Scripts
from ._tasks import wait_or_timeout
from ._types import from_ms

_STOPPED = msgpack.packb({"stopped": True})  # the entry of a stopped ticker (tick.lua)


class Ticker:
    """``async for tick in ticker`` yields the due time (UTC) of each tick this node takes."""

    def __init__(
        self,
        name: str,
        interval_ms: int,
        client: aioredis.Redis,
        keys: Keys,
        scripts: Scripts,
        life: PoolLife,
        log: FilteringBoundLogger,
        boundary: Boundary,
    ) -> None:
        self.name = name
        self._interval_ms = interval_ms
        self._life = life
        self._boundary = boundary
        self._client = client
        self._keys = keys
        self._scripts = scripts
        self._log = log.bind(ticker=name)
        self._outage = Outage(self._log)  # one warning per outage, not one per retry
        self._closed = False
        self._wake = asyncio.Event()

    def __repr__(self) -> str:
        return f"<redpool.Ticker {self.name!r}{' closed' if self._closed else ''}>"

    def __aiter__(self) -> Ticker:
        return self

    @public
    async def __anext__(self) -> datetime:
        delay = 0.05
        while not self._closed:
            try:
                tick = await self._scripts.tick(self.name, self._interval_ms, self._life.id)
            except TRANSIENT as exc:
                self._outage.failed("ticker", exc, delay)
                tick = "changed"
            else:
                self._outage.succeeded("ticker")
            if tick == "changed":  # Redis is away, or the node's next beat settles its life
                await wait_or_timeout(self._wake, delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.05
            if tick == "stopped":
                self._closed = True
                break
            if tick.won:
                return from_ms(tick.due_ms)
            await wait_or_timeout(self._wake, max(0, tick.due_ms - tick.now_ms) / 1000)
        raise StopAsyncIteration

    def close(self) -> None:
        """Stop taking ticks on this node; the other nodes' tickers of this name go on."""
        self._closed = True
        self._wake.set()

    def stop(self) -> asyncio.Task[None]:
        """Turn the ticker off pool-wide: no node gets another tick. Returns the task that
        removes it from Redis (await it to be sure it is gone)."""
        self.close()
        return asyncio.ensure_future(self._delete())

    async def _delete(self) -> None:
        # A marker rather than HDEL: tick.lua recreates a missing entry (lost with Redis's
        # data) but ends at a marker. A new ticker of this name replaces it (ticker.lua).
        await awaitable(self._client.hset(self._keys.tickers, mapping={self.name: _STOPPED}))

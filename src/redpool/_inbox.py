"""The node's one blocking reader: its inbox stream (starts, stops, replies, notifications)
and the pool's event stream (membership, shutdown), in one XREAD."""

from __future__ import annotations

from typing import Protocol

import redis.asyncio as aioredis
from redis.typing import KeyT, StreamIdT
from structlog.typing import FilteringBoundLogger

from ._codec import CorruptEntryError, Message, decode_message
from ._keys import Keys

READ_COUNT = 1000


class InboxHost(Protocol):
    log: FilteringBoundLogger

    async def on_messages(self, messages: list[Message]) -> None: ...

    async def on_events(self, events: list[Message]) -> None: ...


class InboxReader:
    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        node_id: str,
        host: InboxHost,
        block_s: float,
        events_from: str,
    ) -> None:
        self._client = client
        self._host = host
        self._inbox = keys.inbox(node_id)
        self._events = keys.events
        self._block_ms = max(1, int(block_s * 1000))
        self._cursors: dict[KeyT, StreamIdT] = {self._inbox: "0-0", self._events: events_from}

    @property
    def inbox_cursor(self) -> str:
        """The last inbox entry handled: everything up to it may be trimmed."""
        return str(self._cursors[self._inbox])

    async def step(self) -> None:
        reply = await self._client.xread(self._cursors, count=READ_COUNT, block=self._block_ms)
        for raw_stream, entries in reply or []:
            stream = raw_stream.decode()
            decoded: list[Message] = []
            for entry_id, fields in entries:
                try:
                    decoded.append(decode_message(fields))
                except CorruptEntryError as exc:
                    self._host.log.warning(
                        "skipping corrupt stream entry", stream=stream, id=entry_id, error=str(exc)
                    )
            if stream == self._inbox:
                await self._host.on_messages(decoded)
            else:
                await self._host.on_events(decoded)
            self._cursors[stream] = entries[-1][0].decode()

"""The node's one blocking reader: its inbox stream (starts, stops, replies, notifications)
and the pool's event stream (membership, shutdown), in one XREAD."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.typing import KeyT, StreamIdT
from structlog.typing import FilteringBoundLogger

from ._codec import CorruptEntryError, Message, decode_message, text
from ._dispatch import Dispatcher
from ._host import Host
from ._keys import Keys
from ._lease import LeaseClock
from ._options import Options
from ._redis import reader_timeout
from ._scripts import Scripts
from ._tasks import within
from ._types import Job, from_ms

READ_COUNT = 1000
WOKEN_TURNS = 5
"""Loop turns the reader yields after a read that brought messages, before it sends the next
one: as many as a fast start() takes from its delivery to its report (``_begin_start``, the
handler's task, its completion, the report's batch), so that report goes out first. Each turn
with nothing else to run is cheap; under load the next read finds more messages waiting."""


@dataclass(frozen=True, slots=True)
class _Ref:
    """A start, stop or notify message: which job, at which assignment."""

    kind: str
    key: str
    worker: str
    epoch: int
    first: tuple[int, bytes, str, int] | None = None
    """On admit's first start: (withdraw at ms, payload, dispatcher, admitted ms)."""


@dataclass(frozen=True, slots=True)
class _Reply:
    request: int
    outcome: str
    message: str


def _parse(msg: Message) -> _Ref | _Reply | None:
    """The message's fields, checked once; None for a hello. Raises on a malformed one."""
    f = msg.fields
    if msg.kind == "reply":
        return _Reply(int(f[0]), text(f[1]), text(f[2]))
    if msg.kind in ("start", "stop", "notify"):
        first = None
        if msg.kind == "start" and len(f) == 7:
            first = (int(f[3]), bytes(f[4]), text(f[5]), int(f[6]))
        return _Ref(msg.kind, text(f[0]), text(f[1]), int(f[2]), first)
    if msg.kind == "hello":
        return None
    raise ValueError(f"unknown message kind {msg.kind!r}")


class InboxRouter:
    """Where each inbox message goes: starts to their workers (claimed first, in one script
    call per read, unless the fast path applies: see _start); stops and notifications to the
    worker named; replies to the dispatcher waiting for them."""

    def __init__(
        self,
        scripts: Scripts,
        host: Host,
        lease: LeaseClock,
        dispatcher: Dispatcher,
        options: Options,
        log: FilteringBoundLogger,
    ) -> None:
        self._scripts = scripts
        self._host = host
        self._workers = host.workers
        self._lease = lease
        self._dispatcher = dispatcher
        self._options = options
        self.log = log

    async def on_messages(self, messages: list[Message]) -> None:
        starts: list[_Ref] = []
        others: list[_Ref | _Reply] = []
        for msg in messages:
            try:
                parsed = _parse(msg)
            except (IndexError, ValueError, TypeError, CorruptEntryError) as exc:
                self.log.warning("skipping malformed message", kind=msg.kind, error=repr(exc))
                continue
            if isinstance(parsed, _Ref) and parsed.kind == "start":
                starts.append(parsed)
            elif parsed is not None:
                others.append(parsed)
        # Starts first (a stop read with its job's start must find it), but the stops and
        # replies are handled also when a claim fails: the reader never reads them again.
        try:
            if starts:
                await self._start(starts)
        finally:
            for item in others:
                self._handle(item)

    def _handle(self, item: _Ref | _Reply) -> None:
        if isinstance(item, _Reply):
            self._dispatcher.on_reply(item.request, item.outcome, item.message)
            return
        worker = self._workers.get(item.worker)
        if item.kind == "notify":
            if worker is not None:
                worker._notify(item.key, item.epoch)
        elif worker is not None:
            worker._begin_stop(item.key, item.epoch)
        else:
            self._host.spawn(
                self._host.report_stopped(item.key, item.worker, item.epoch),
                f"reporting the stop of {item.key!r}",
            )

    async def _start(self, starts: list[_Ref]) -> None:
        """Start what this node's workers were sent. A first delivery read promptly is started
        at once (``Options.may_start_unclaimed``); every other one is claimed first, in one
        script call for the batch, so a stale or repeated delivery never starts a job."""
        to_claim: dict[str, tuple[str, str, int]] = {}
        for ref in starts:
            key, worker_id, epoch = ref.key, ref.worker, ref.epoch
            worker = self._workers.get(worker_id)
            if worker is None or not worker._accepting or worker._local_epoch(key) is not None:
                continue
            if not self._lease.valid():
                return  # fenced: the records keep these starts for later deliveries
            if ref.first is not None:
                withdraw_at, payload, dispatcher, admitted_ms = ref.first
                now = self._lease.server_now_ms()
                if self._options.may_start_unclaimed(now, withdraw_at, self._lease.valid_for()):
                    worker._begin_start(
                        Job(key, payload, from_ms(admitted_ms), worker_id, dispatcher, epoch)
                    )
                    continue
            to_claim[key] = (key, worker_id, epoch)
        if not to_claim:
            return
        items = list(to_claim.values())
        for (key, worker_id, epoch), claimed in zip(
            items, await self._scripts.claim(items), strict=True
        ):
            worker = self._workers.get(worker_id)
            if claimed is None or worker is None or not worker._accepting:
                continue  # a claimed job not started here is rerouted by its record
            worker._begin_start(
                Job(
                    key=key,
                    payload=claimed.payload,
                    created_at=from_ms(claimed.created_ms),
                    worker_id=worker_id,
                    node_id=claimed.dispatcher,
                    epoch=epoch,
                    attempt=claimed.attempts,
                )
            )


class InboxReader:
    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        node_id: str,
        router: InboxRouter,
        on_events: Callable[[list[Message]], Awaitable[None]],
        block_s: float,
        events_from: str,
    ) -> None:
        self._client = client
        self._router = router
        self._on_events = on_events
        self._inbox = keys.inbox(node_id)
        self._events = keys.events
        self._block_ms = max(1, int(block_s * 1000))
        self._timeout = reader_timeout(block_s)
        self._cursors: dict[KeyT, StreamIdT] = {self._inbox: "0-0", self._events: events_from}
        self._conn: AbstractConnection | None = None

    @property
    def inbox_cursor(self) -> str:
        """The last inbox entry read (and handed on): everything up to it may be trimmed."""
        return str(self._cursors[self._inbox])

    def restart(self) -> None:
        """Read both streams from their start: Redis lost them, and the new ones' ids may be
        lower than the cursors (a failover to a server whose clock is behind)."""
        self._cursors = {self._inbox: "0-0", self._events: "0-0"}

    async def _xread(self) -> Any:
        """One XREAD on the reader's connection, held (the reader's pool is its alone): a read
        skips the pool's checkout and its health-check read. A read that failed or was
        cancelled drops the connection (its reply may still come); the next one reconnects."""
        if self._conn is None:
            self._conn = await self._client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        conn = self._conn
        try:
            await conn.send_command(
                "XREAD",
                "COUNT",
                READ_COUNT,
                "BLOCK",
                self._block_ms,
                "STREAMS",
                *self._cursors.keys(),
                *self._cursors.values(),
            )
            return self._client.response_callbacks["XREAD"](await conn.read_response())
        except BaseException:
            await conn.disconnect(nowait=True)
            raise

    async def step(self) -> None:
        reply = await within(self._xread(), self._timeout)
        for raw_stream, entries in reply or []:
            stream = raw_stream.decode()
            decoded: list[Message] = []
            for entry_id, fields in entries:
                try:
                    decoded.append(decode_message(fields))
                except CorruptEntryError as exc:
                    self._router.log.warning(
                        "skipping corrupt stream entry", stream=stream, id=entry_id, error=str(exc)
                    )
            # Past these entries whatever happens next: a batch is never handled twice (a
            # failure is repaired from the job records, not by reading it again).
            self._cursors[stream] = entries[-1][0].decode()
            if stream == self._inbox:
                await self._router.on_messages(decoded)
            else:
                await self._on_events(decoded)
        if reply:
            # Let the work this read woke run before the next read is sent: a dispatcher's
            # caller returns (and sends its next call), a fast start() sends its report.
            for _ in range(WOKEN_TURNS):
                await asyncio.sleep(0)

"""The node's one blocking reader: its inbox stream (starts, stops, replies, notifications)
and the pool's event stream (membership, shutdown), in one XREAD."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.typing import KeyT, StreamIdT
from structlog.typing import FilteringBoundLogger

from ._codec import CorruptEntryError, Message, decode_message, text
from ._dispatch import Dispatcher
from ._keys import Keys
from ._lease import Lease
from ._options import Options
from ._scripts import Scripts
from ._types import Job, from_ms
from ._worker import Worker

READ_COUNT = 1000


def _job_ref(msg: Message) -> tuple[str, str, int]:
    """(key, worker id, epoch) of a start, stop or notify message."""
    return text(msg.fields[0]), text(msg.fields[1]), int(msg.fields[2])


class InboxRouter:
    """Where each inbox message goes: starts to their workers (claimed first, in one script
    call per read, unless the fast path applies: see _start); stops and notifications to the
    worker named; replies to the dispatcher waiting for them."""

    def __init__(
        self,
        scripts: Scripts,
        workers: Mapping[str, Worker],
        lease: Lease,
        dispatcher: Dispatcher,
        options: Options,
        report_stopped: Callable[[str, str, int], Coroutine[Any, Any, None]],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        log: FilteringBoundLogger,
    ) -> None:
        self._scripts = scripts
        self._workers = workers
        self._lease = lease
        self._dispatcher = dispatcher
        self._options = options
        self._report_stopped = report_stopped
        self._spawn = spawn
        self.log = log

    async def on_messages(self, messages: list[Message]) -> None:
        starts: list[Message] = []
        others: list[Message] = []
        for msg in messages:
            try:
                self._check_message(msg)
                (starts if msg.kind == "start" else others).append(msg)
            except (IndexError, ValueError, TypeError, CorruptEntryError) as exc:
                self.log.warning("skipping malformed message", kind=msg.kind, error=repr(exc))
        if starts:
            await self._start(starts)
        for msg in others:
            self._handle(msg)

    def _check_message(self, msg: Message) -> None:
        if msg.kind == "reply":
            int(msg.fields[0]), text(msg.fields[1]), text(msg.fields[2])
        elif msg.kind in ("stop", "notify"):
            _job_ref(msg)
        elif msg.kind == "start":
            _job_ref(msg)
            if len(msg.fields) == 7:
                int(msg.fields[3]), bytes(msg.fields[4]), text(msg.fields[5]), int(msg.fields[6])
        elif msg.kind != "hello":
            raise ValueError(f"unknown message kind {msg.kind!r}")

    def _handle(self, msg: Message) -> None:
        if msg.kind == "reply":
            self._dispatcher.on_reply(int(msg.fields[0]), text(msg.fields[1]), text(msg.fields[2]))
        elif msg.kind == "stop":
            key, worker_id, epoch = _job_ref(msg)
            worker = self._workers.get(worker_id)
            if worker is not None:
                worker.begin_stop(key, epoch)
            else:
                self._spawn(self._report_stopped(key, worker_id, epoch))
        elif msg.kind == "notify":
            key, worker_id, epoch = _job_ref(msg)
            if worker := self._workers.get(worker_id):
                worker.notify(key, epoch)

    async def _start(self, starts: list[Message]) -> None:
        """Start what this node's workers were sent. A first delivery read promptly is started
        at once (``Options.may_start_unclaimed``); every other one is claimed first, in one
        script call for the batch, so a stale or repeated delivery never starts a job."""
        to_claim: dict[str, tuple[str, str, int]] = {}
        for msg in starts:
            key, worker_id, epoch = _job_ref(msg)
            worker = self._workers.get(worker_id)
            if worker is None or not worker.accepting or worker.local_epoch(key) is not None:
                continue
            if not self._lease.valid():
                return  # fenced: the records keep these starts for later deliveries
            if len(msg.fields) == 7:
                withdraw_at, payload = int(msg.fields[3]), bytes(msg.fields[4])
                dispatcher, admitted_ms = text(msg.fields[5]), int(msg.fields[6])
                now = self._lease.server_now_ms()
                if self._options.may_start_unclaimed(now, withdraw_at, self._lease.valid_for()):
                    worker.begin_start(
                        Job(key, payload, from_ms(admitted_ms), worker_id, dispatcher)
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
            if claimed is None or worker is None or not worker.accepting:
                continue  # a claimed job not started here is rerouted by its record
            worker.begin_start(
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
        self._cursors: dict[KeyT, StreamIdT] = {self._inbox: "0-0", self._events: events_from}

    @property
    def inbox_cursor(self) -> str:
        """The last inbox entry read (and handed on): everything up to it may be trimmed."""
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

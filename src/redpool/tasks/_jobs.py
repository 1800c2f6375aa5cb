"""``node.jobs``: listing task jobs from the status indexes (no SCAN) and counting them."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import msgpack

from .._codec import CorruptEntryError
from .._redis import awaitable, public
from ..errors import InvalidArgumentError
from ._runtime import TaskLayer
from ._status import JobInfo, Page, Status, decode_info

SCAN_FACTOR = 10  # a filtered page reads at most this many times ``limit`` index entries


@dataclass(frozen=True, slots=True)
class QueueStats:
    ready: int  # queued, waiting for a slot
    active: int  # on a worker (starting, running, pausing, paused, suspending, canceling)
    max_running: int | None
    max_queued: int | None


@dataclass(frozen=True, slots=True)
class WorkerStats:
    running: int
    concurrency: int
    queues: dict[str, int | None]


@dataclass(frozen=True, slots=True)
class JobStats:
    """``node.jobs.stats()``: jobs per status (finished ones until purged), per queue and
    per task worker."""

    statuses: dict[Status, int]
    queues: dict[str, QueueStats]
    workers: dict[str, WorkerStats]


class Jobs:
    """The task jobs of the pool (``node.jobs``)."""

    def __init__(self, layer: TaskLayer) -> None:
        self._layer = layer
        self._boundary = layer.boundary

    @public
    async def list(
        self,
        status: Status | Collection[Status] | None = None,
        queue: str | None = None,
        task: str | None = None,
        tenant: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page[JobInfo]:
        """Jobs of the given statuses (default: all), oldest first per status, optionally of
        one queue, task or tenant; pass ``page.cursor`` back for the next page. Not a
        snapshot: a job that changes status meanwhile may be missed or listed twice."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidArgumentError(f"limit must be an int 1..1000, got {limit!r}")
        wanted = _statuses(status)
        index, offset = _cursor(cursor, len(wanted))
        keys, client = self._layer.keys, self._layer.client
        items: list[JobInfo] = []
        budget = SCAN_FACTOR * limit
        while index < len(wanted) and len(items) < limit and budget > 0:
            chunk = min(limit, budget)
            members = await client.zrange(
                keys.status(wanted[index].value), offset, offset + chunk - 1
            )
            budget -= chunk
            offset += len(members)
            if members:
                raws = await self._layer.call("listing task jobs", partial(self._read, members))
                for i, member in enumerate(members):
                    info = self._decode(member.decode(), raws[2 * i], raws[2 * i + 1])
                    if info is not None and _matches(info, queue, task, tenant):
                        items.append(info)
            if len(members) < chunk:
                index, offset = index + 1, 0
        done = index >= len(wanted)
        return Page(items, None if done else f"{index}:{offset}")

    @public
    async def stats(self) -> JobStats:
        return await self._layer.call("task job stats", self._stats)

    async def _stats(self) -> JobStats:
        keys, client = self._layer.keys, self._layer.client
        workers_raw = await awaitable(client.hgetall(keys.workers))
        queues_raw = await awaitable(client.hgetall(keys.queues))
        workers: dict[str, dict[str, Any]] = {}
        for wid, raw in workers_raw.items():
            rec = _unpack(raw)
            if isinstance(rec, dict) and isinstance(rec.get("q"), dict):
                workers[wid.decode()] = rec
        confs = {q.decode(): _unpack(raw) for q, raw in queues_raw.items()}
        names = sorted({*confs, *(q for rec in workers.values() for q in rec["q"])})
        pipe = client.pipeline(transaction=False)
        for s in Status:
            pipe.zcard(keys.status(s.value))
        for name in names:
            pipe.zcard(keys.ready(name))
            pipe.scard(keys.active(name))
        for wid in workers:
            pipe.scard(keys.worker_runs(wid))
        counts = await pipe.execute()
        statuses = {s: int(counts[i]) for i, s in enumerate(Status)}
        at = len(Status)
        queues: dict[str, QueueStats] = {}
        for name in names:
            conf = confs.get(name) if isinstance(confs.get(name), dict) else {}
            queues[name] = QueueStats(
                int(counts[at]), int(counts[at + 1]), _cap(conf, "mr"), _cap(conf, "mq")
            )
            at += 2
        stats: dict[str, WorkerStats] = {}
        for wid, rec in workers.items():
            caps = {str(q): (None if c < 0 else int(c)) for q, c in rec["q"].items()}
            stats[wid] = WorkerStats(int(counts[at]), int(rec["c"]), caps)
            at += 1
        return JobStats(statuses, queues, stats)

    async def _read(self, members: Sequence[bytes]) -> Any:
        """The record and error of each key, flat."""
        keys = self._layer.keys
        pipe = self._layer.client.pipeline(transaction=False)
        for member in members:
            pipe.hget(keys.jobs, member.decode())
            pipe.hget(keys.data(member.decode()), "err")
        return await pipe.execute()

    def _decode(self, key: str, raw: bytes | None, err: bytes | None) -> JobInfo | None:
        if raw is None:  # purged since the index was read
            return None
        try:
            return decode_info(key, raw, err)
        except CorruptEntryError as exc:
            self._layer.log.warning("corrupt task record skipped", key=key, error=str(exc))
            return None


def _statuses(status: Status | Collection[Status] | None) -> list[Status]:
    if status is None:
        return list(Status)
    chosen = [status] if isinstance(status, (Status, str)) else list(status)
    try:
        return sorted({Status(s) for s in chosen}, key=list(Status).index)
    except ValueError as exc:
        raise InvalidArgumentError(f"unknown status in {status!r}") from exc


def _cursor(cursor: str | None, count: int) -> tuple[int, int]:
    if cursor is None:
        return 0, 0
    try:
        index, offset = (int(part) for part in cursor.split(":"))
    except (ValueError, AttributeError):
        raise InvalidArgumentError(f"not a cursor of jobs.list(): {cursor!r}") from None
    if not (0 <= index <= count and offset >= 0):
        raise InvalidArgumentError(f"not a cursor of jobs.list(): {cursor!r}")
    return index, offset


def _matches(info: JobInfo, queue: str | None, task: str | None, tenant: str | None) -> bool:
    return (
        (queue is None or info.queue == queue)
        and (task is None or info.task == task)
        and (tenant is None or info.tenant == tenant)
    )


def _unpack(raw: bytes) -> Any:
    try:
        return msgpack.unpackb(raw, raw=False)
    except Exception:  # garbage written by hand: left out
        return None


def _cap(conf: Any, field: str) -> int | None:
    value = conf.get(field, -1) if isinstance(conf, dict) else -1
    return None if not isinstance(value, int) or value < 0 else value

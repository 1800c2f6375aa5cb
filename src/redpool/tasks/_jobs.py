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
        """Jobs of the given statuses (default: all), optionally of one queue, task or
        tenant: first the active ones, oldest admission first, then the finished ones (the
        pool's history, kept for their keep time and up to ``max_retained``), newest first.
        Pass ``page.cursor`` back for the next page: it is a position in the status indexes,
        so jobs added or purged meanwhile move nothing (one that changes status between pages
        may be missed or listed twice). A filtered page reads at most SCAN_FACTOR x ``limit``
        index entries, so it may be short with a cursor to go on."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise InvalidArgumentError(f"limit must be an int 1..1000, got {limit!r}")
        wanted = _statuses(status)
        active, ended = [s for s in wanted if not s.terminal], [s for s in wanted if s.terminal]
        groups = [g for g in (active, ended) if g]
        group, after = _cursor(cursor, len(groups))
        items: list[JobInfo] = []
        budget = SCAN_FACTOR * limit
        while group < len(groups) and len(items) < limit and budget > 0:
            chunk = min(limit, budget)
            entries = await self._layer.call(
                "listing task jobs", partial(self._entries, groups[group], after, chunk)
            )
            budget -= chunk
            raws = await self._layer.call(
                "listing task jobs", partial(self._read, [key for key, _ in entries])
            )
            consumed = 0
            for key, score in entries:
                after = score
                info = self._decode(key, raws[2 * consumed], raws[2 * consumed + 1])
                consumed += 1
                if info is not None and _matches(info, queue, task, tenant):
                    items.append(info)
                    if len(items) == limit:
                        break
            if len(entries) < chunk and consumed == len(entries):  # the group is done
                group, after = group + 1, None
        if group >= len(groups):
            return Page(items, None)
        return Page(items, f"{group}:{'-' if after is None else after}")

    async def _entries(
        self, statuses: Sequence[Status], after: int | None, count: int
    ) -> Sequence[tuple[str, int]]:
        """The next ``count`` (key, score) of one group of status indexes past ``after``:
        active ones by generation upwards, finished ones by finish sequence downwards. The
        indexes are read in one MULTI, so a job moving between them is seen once."""
        keys = self._layer.keys
        ended = statuses[0].terminal
        pipe = self._layer.client.pipeline(transaction=True)
        for s in statuses:
            if ended:
                top = "+inf" if after is None else f"({after}"
                pipe.zrevrangebyscore(keys.status(s.value), top, "-inf", 0, count, True)
            else:
                bottom = "-inf" if after is None else f"({after}"
                pipe.zrangebyscore(keys.status(s.value), bottom, "+inf", 0, count, True)
        found = await pipe.execute()
        merged = sorted(
            ((int(score), member.decode()) for one in found for member, score in one),
            reverse=ended,
        )
        return [(key, score) for score, key in merged[:count]]

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

    async def _read(self, members: Sequence[str]) -> Any:
        """The record and error of each key, flat."""
        keys = self._layer.keys
        pipe = self._layer.client.pipeline(transaction=False)
        for member in members:
            pipe.hget(keys.jobs, member)
            pipe.hget(keys.data(member), "err")
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


def _cursor(cursor: str | None, count: int) -> tuple[int, int | None]:
    """(group of statuses, last score listed in it; None: from its start)."""
    if cursor is None:
        return 0, None
    try:
        group, score = cursor.split(":")
        at = int(group), None if score == "-" else int(score)
    except (ValueError, AttributeError):
        raise InvalidArgumentError(f"not a cursor of jobs.list(): {cursor!r}") from None
    if not 0 <= at[0] <= count:
        raise InvalidArgumentError(f"not a cursor of jobs.list(): {cursor!r}")
    return at


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

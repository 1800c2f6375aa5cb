"""Read-only views of the whole pool for users, a CLI or a dashboard: which jobs exist, which
worker runs which job, and where each worker lives. The listings cost one script round trip
per page of at most ``PAGE`` jobs and read no payload (only ``job_payload`` does)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import redis.asyncio as aioredis
from structlog.typing import FilteringBoundLogger

from ._codec import CorruptEntryError, decode_job_info, decode_record, decode_worker
from ._keys import Keys
from ._redis import awaitable
from ._scripts import Scripts
from ._types import JobInfo, WorkerInfo, from_ms

PAGE = 500
_CORRUPT = b"corrupt"


class Queries:
    def __init__(
        self, client: aioredis.Redis, keys: Keys, scripts: Scripts, log: FilteringBoundLogger
    ) -> None:
        self._client = client
        self._keys = keys
        self._scripts = scripts
        self._log = log

    async def job_keys(self) -> list[str]:
        keys = await awaitable(self._client.hkeys(self._keys.jobs))
        return sorted(k.decode() for k in keys)

    async def job_payload(self, key: str) -> bytes | None:
        raw = await awaitable(self._client.hget(self._keys.jobs, key))
        if raw is None:
            return None
        try:
            return decode_record(cast(bytes, raw)).payload
        except CorruptEntryError as exc:
            self._log.warning("corrupt job record", key=key, error=str(exc))
            return None

    async def job_info(self, key: str) -> JobInfo | None:
        (info,) = await self._infos([key])
        return info

    async def pool_jobs(self, worker: str | None) -> list[JobInfo]:
        """Every job of the pool, or the jobs whose record names ``worker``, sorted by key."""
        if worker is None:
            keys = [k.decode() for k in await awaitable(self._client.hkeys(self._keys.jobs))]
            infos = [
                info
                for i in range(0, len(keys), PAGE)
                for info in await self._infos(keys[i : i + PAGE])
                if info is not None
            ]
        else:
            # SSCAN may return a member twice across pages; a job that moves meanwhile shows
            # up under whichever worker its record named when the page was read.
            found: dict[str, JobInfo] = {}
            cursor = "0"
            while True:
                cursor, page = await self._scripts.worker_job_infos(worker, cursor, PAGE)
                for raw in page:
                    info = self._decode(raw)
                    if info is not None:
                        found[info.key] = info
                if cursor == "0":
                    break
            infos = list(found.values())
        return sorted(infos, key=lambda info: info.key)

    async def pool_workers(self) -> list[WorkerInfo]:
        out = []
        for entry in await self._scripts.pool_workers():
            worker_id = entry.worker
            try:
                rec = decode_worker(entry.record)
            except CorruptEntryError as exc:
                self._log.warning("corrupt worker record", worker=worker_id, error=str(exc))
                continue
            node_id = worker_id.split(".", 1)[0]
            created = from_ms(rec.created_ms)
            out.append(
                WorkerInfo(
                    worker_id, node_id, created, rec.host, rec.pid, entry.job_count, rec.capacity
                )
            )
        return sorted(out, key=lambda w: w.created_at)

    async def _infos(self, keys: Sequence[str]) -> list[JobInfo | None]:
        out: list[JobInfo | None] = []
        for key, raw in zip(keys, await self._scripts.job_infos(keys), strict=True):
            if raw == _CORRUPT:
                self._log.warning("corrupt job record", key=key)
            out.append(None if raw is None or raw == _CORRUPT else self._decode(raw))
        return out

    def _decode(self, raw: bytes) -> JobInfo | None:
        try:
            return decode_job_info(raw)
        except CorruptEntryError as exc:
            self._log.warning("corrupt job record", error=str(exc))
            return None

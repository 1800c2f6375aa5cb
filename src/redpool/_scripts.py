"""The Lua scripts of ``lua/``: loaded once, run with EVALSHA, wrapped in typed calls.

Each script is ``lua/_records.lua`` and ``lua/_prelude.lua`` followed by the script's own file,
behind a Redis 7 shebang line for the scripts flagged ``allow-oom`` (the flags are part of the
loaded source, so EVALSHA runs with them). EVALSHA is sent on a connection of the client's pool
(the two scripts on every dispatch's path, admit and started, have a connection of their own:
``_redis.Lane``) without redis-py's own retry (which would run a script again after a lost
reply, blindly): a call either answers, or fails and leaves retrying to redpool, whose retries
of mutating scripts carry request ids. A NOSCRIPT answer (after a restart) loads the script
and sends it again.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, ResponseError

from ._codec import text
from ._keys import Keys
from ._redis import Lane
from ._routing import Ring
from ._tasks import within
from .errors import Requeue

_NAMES = (
    "admit",
    "assign",
    "claim",
    "heartbeat",
    "job_infos",
    "join",
    "leave",
    "notify",
    "owned_jobs",
    "pool_workers",
    "purge",
    "shutdown",
    "started",
    "stop",
    "stopped",
    "take_notes",
    "tick",
    "ticker",
    "withdraw",
)


# Scripts that must run when Redis is out of memory (maxmemory with noeviction): they renew
# leases, shut the pool down or purge it, or move, start, stop or free jobs that exist, and
# never admit a job or add a note, so a full Redis refuses new work (RedisFullError) but does
# not fence nodes or stop running jobs.
# Without the flag Redis refuses any write in a script under OOM. What they may add is bounded:
# stream messages (trimmed) and records rewritten in place.
ALLOW_OOM = frozenset(
    {
        "assign",
        "claim",
        "heartbeat",
        "leave",
        "owned_jobs",
        "purge",
        "shutdown",
        "started",
        "stop",
        "stopped",
        "take_notes",
        "withdraw",
    }
)


def _lua_dir() -> Path:
    # In a wheel the scripts ship as redpool/lua; in a source checkout they live in ../../lua.
    packaged = Path(str(resources.files("redpool"))) / "lua"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "lua"


def _shebang(name: str, allow_oom: frozenset[str]) -> str:
    """Redis reads script flags only from the first line of the source."""
    return "#!lua flags=allow-oom\n" if name in allow_oom else ""


def load_sources(
    prelude_name: str | tuple[str, ...],
    names: Sequence[str],
    allow_oom: frozenset[str] = ALLOW_OOM,
) -> dict[str, str]:
    """Each script of ``names`` behind its flags line, ``_records.lua`` (shared by both
    preludes) and the prelude ``prelude_name`` (or several, in order)."""
    folder = _lua_dir()
    preludes = (prelude_name,) if isinstance(prelude_name, str) else prelude_name
    prelude = "\n".join((folder / f"{name}.lua").read_text() for name in ("_records", *preludes))
    return {
        name: _shebang(name, allow_oom) + prelude + "\n" + (folder / f"{name}.lua").read_text()
        for name in names
    }


@cache
def sources() -> dict[str, str]:
    return load_sources("_prelude", _NAMES)


def requeue_message(requeue: Requeue) -> str:
    """The message ``started`` takes with a requeue: delay ms (-1: the backoff) and attempts."""
    delay_ms = -1 if requeue.delay is None else round(requeue.delay * 1000)
    return f"{delay_ms} {requeue.max_attempts}"


def _bulks(args: Sequence[str | int | bytes]) -> bytes:
    """``args`` as RESP bulk strings, encoded as redis-py does (str as UTF-8, int in decimal)."""
    out = []
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


@dataclass(frozen=True, slots=True)
class Admission:
    """One job of an admit call."""

    key: str
    payload: bytes
    request: int
    candidates: str  # the key's ring order ('' when the ring is empty: the job waits)
    withdraw_in_ms: int  # until the dispatcher would withdraw it
    retry: bool  # an earlier admit of this request may have run (its reply was lost)


@dataclass(frozen=True, slots=True)
class Admitted:
    status: str  # 'ok' | 'stale' | 'shutdown'
    results: list[str]  # per job, when 'ok': 'ok' | 'exists' | 'full'
    backlog: int  # jobs waiting for a worker, when 'ok'
    version: str  # the current version, when 'stale'


@dataclass(frozen=True, slots=True)
class Withdrawal:
    outcome: str  # 'started' | 'withdrawn' | 'gone'
    state: str  # when withdrawn: 'queued', 'assigned' or 'starting'
    worker: str  # when withdrawn: the owner ('' when queued)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What ``started`` says a worker should do after start() returned."""

    action: str  # 'run' | 'notes' | 'stop' | 'unowned' | 'done' | 'requeue'
    retry_in_ms: int = 0  # for 'requeue': when the next attempt is due


@dataclass(frozen=True, slots=True)
class Claimed:
    payload: bytes
    created_ms: int
    attempts: int
    dispatcher: str


@dataclass(frozen=True, slots=True)
class Started:
    """A worker's report of how start() ended for one assignment."""

    key: str
    worker: str
    epoch: int
    outcome: str  # ok, error or requeue
    message: str


@dataclass(frozen=True, slots=True)
class Stopped:
    """A worker's report that stop() ran for one assignment (the key may be freed)."""

    key: str
    worker: str
    epoch: int


@dataclass(frozen=True, slots=True)
class Beat:
    now_ms: int
    missing: list[str]
    reap_at_ms: int  # when the next lease may be reaped (-1: no lease at all)
    version: str
    shutdown: bool
    routable: list[tuple[str, int]]
    corrupt: list[str]
    reaped: list[str]  # worker and node ids whose expired lease this beat removed
    released: int  # jobs the reaped workers had (back in the queue, or deleted if stopping)
    incarnation: str = ""  # the pool's life the node belongs to after this beat
    life: str = "same"  # 'same', 'lost' (Redis lost the pool's state) or 'ended'

    @property
    def ended(self) -> bool:
        """The node's pool was shut down (or purged) while it was cut off."""
        return self.life == "ended"

    @property
    def lost(self) -> bool:
        """Redis lost the pool's state; the node now belongs to ``incarnation``."""
        return self.life == "lost"


@dataclass(frozen=True, slots=True)
class WorkerEntry:
    """A registered worker, as ``pool_workers`` reads it."""

    worker: str
    record: bytes  # msgpack {c: created ms, h: host, p: pid}
    job_count: int  # the size of its owned set


@dataclass(frozen=True, slots=True)
class ShutdownTimes:
    """A shutdown under way, in server ms."""

    deadline_ms: int  # after which anyone may finish it
    now_ms: int

    @property
    def left(self) -> float:
        """Seconds until the deadline."""
        return max(0, self.deadline_ms - self.now_ms) / 1000


@dataclass(frozen=True, slots=True)
class PurgeStep:
    status: str  # 'none', 'pending', 'more' or 'done' (lua/purge.lua)
    incarnation: str
    deadline_ms: int
    now_ms: int


@dataclass(frozen=True, slots=True)
class Tick:
    won: bool
    start_ms: int
    interval_ms: int
    index: int  # the tick won, or the next one (not due yet)
    now_ms: int

    @property
    def due_ms(self) -> int:
        return self.start_ms + self.index * self.interval_ms


class ScriptRunner:
    """Runs loaded scripts by name with fixed KEYS and key templates (the pool core's here;
    the tasks layer has a runner of its own)."""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: list[str],
        templates: list[str],
        script_sources: dict[str, str],
        lanes: Sequence[str] = (),
    ) -> None:
        self._client = client
        self._keys = keys
        self._templates = templates
        self._sources = script_sources
        self._shas = {
            name: hashlib.sha1(src.encode()).hexdigest() for name, src in self._sources.items()
        }
        # Every call's command starts with the same arguments (the sha, the keys and the key
        # templates): they are encoded once, not on every call.
        fixed = [*self._keys, *self._templates]
        self._fixed = 3 + len(fixed)
        self._heads = {
            name: _bulks(["EVALSHA", sha, len(self._keys), *fixed])
            for name, sha in self._shas.items()
        }
        self._lanes = {name: Lane(client) for name in lanes}  # connected on first use

    async def _run(self, name: str, args: Sequence[str | int | bytes]) -> Any:
        command = [b"*%d\r\n" % (self._fixed + len(args)), self._heads[name], _bulks(args)]
        try:
            return await self._evalsha(name, command)
        except NoScriptError:
            await self._client.script_load(self._sources[name])
            return await self._evalsha(name, command)

    async def _evalsha(self, name: str, command: list[bytes]) -> Any:
        """One EVALSHA, on the script's lane when it has one and it is free, else on a
        connection of the pool."""
        lane = self._lanes.get(name)
        conn = None if lane is None else lane.take()
        if conn is not None:
            assert lane is not None
            try:
                return await within(self._send(conn, command), lane.timeout)
            finally:
                lane.give_back()
        pool = self._client.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            return await self._send(conn, command)
        finally:
            await pool.release(conn)

    async def _send(self, conn: AbstractConnection, command: list[bytes]) -> Any:
        """Send the call and read its reply, never twice: a connection that failed mid-call
        (or whose call was cancelled) is dropped, as its reply may still be on its way."""
        try:
            await conn.send_packed_command(command)
            return await conn.read_response()
        except ResponseError:
            raise  # a whole reply was read: the connection is fine
        except BaseException:
            await conn.disconnect(nowait=True)
            raise

    async def aclose(self) -> None:
        """Close the lanes' connections (the client's pool is its owner's to close)."""
        for lane in self._lanes.values():
            await lane.aclose()


class Scripts(ScriptRunner):
    """Typed entry points to the pool's atomic operations."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        # The scripts on the path of every dispatch (admit, then the worker's started) get
        # connections of their own.
        super().__init__(
            client, keys.script_keys(), keys.script_templates(), sources(), ("admit", "started")
        )
        self._schedule_template = keys.schedule_jobs_template
        self.client = client
        self.keys = keys  # for the tasks layer's purge (lifecycle.purge)

    async def admit(
        self,
        node: str,
        ring: Ring,
        eps: float,
        grace_ms: int,
        max_queued: int,
        jobs: Sequence[Admission],
    ) -> Admitted:
        args: list[str | int | bytes] = [node, ring.version, grace_ms, max_queued, str(eps)]
        args.append(ring.members)
        for job in jobs:
            args += [
                job.key,
                job.payload,
                job.request,
                job.candidates,
                job.withdraw_in_ms,
                int(job.retry),
            ]
        res = await self._run("admit", args)
        status = text(res[0])
        if status == "ok":
            return Admitted(status, [text(v) for v in res[1]], int(res[2]), "")
        return Admitted(status, [], 0, text(res[1]) if status == "stale" else "")

    async def assign(
        self,
        ring: Ring,
        eps: float,
        grace_ms: int,
        moves: Sequence[tuple[str, int, str]],
        move: bool = False,
    ) -> tuple[str, int, list[str]]:
        """(status, jobs moved, the workers that got them); ``moves``: (key, expected epoch,
        the key's candidates in ring order). A job that has a worker stays there unless
        ``move`` (rebalancing: forward in its order, to the first with room)."""
        mode = "move" if move else "keep"
        args: list[str | int] = [ring.version, grace_ms, str(eps), ring.members, mode]
        for key, epoch, candidates in moves:
            args += [key, epoch, candidates]
        res = await self._run("assign", args)
        if text(res[0]) != "ok":
            return text(res[0]), 0, []
        return "ok", int(res[1]), [text(w) for w in res[2]]

    async def claim(self, starts: Sequence[tuple[str, str, int]]) -> list[Claimed | None]:
        args: list[str | int] = []
        for key, worker, epoch in starts:
            args += [key, worker, epoch]
        out: list[Claimed | None] = []
        for item in await self._run("claim", args):
            if item == 0:
                out.append(None)
            else:
                payload, created, attempts, dispatcher = item
                out.append(Claimed(bytes(payload), int(created), int(attempts), text(dispatcher)))
        return out

    async def heartbeat(
        self,
        node: str,
        workers: Sequence[str],
        ttl_ms: int,
        grace_ms: int,
        trim: str,
        route_limit: int,
        incarnation: str,
    ) -> Beat:
        args: list[str | int] = [node, ttl_ms, grace_ms, trim, route_limit, incarnation, *workers]
        (
            now,
            missing,
            reap_at,
            version,
            shutdown,
            routable,
            corrupt,
            reaped,
            released,
            current,
            life,
        ) = await self._run("heartbeat", args)
        pairs = [(text(routable[i]), int(routable[i + 1])) for i in range(0, len(routable), 2)]
        return Beat(
            now_ms=int(now),
            missing=[text(m) for m in missing],
            reap_at_ms=int(reap_at),
            version=text(version),
            shutdown=bool(shutdown),
            routable=pairs,
            corrupt=[text(c) for c in corrupt],
            reaped=[text(r) for r in reaped],
            released=int(released),
            incarnation=text(current),
            life=text(life),
        )

    async def join(
        self, worker: str, ttl_ms: int, incarnation: str, capacity: int | None = None
    ) -> tuple[str, int] | Literal["shutdown", "changed"]:
        """The new membership version and the server time; 'shutdown' when the pool shuts
        down; 'changed' when the node's incarnation is not the pool's. The worker record names
        this process (host, pid) for pool_workers() and job_info()."""
        args: list[str | int] = [worker, ttl_ms, socket.gethostname(), os.getpid(), incarnation]
        args.append("" if capacity is None else capacity)
        res = await self._run("join", args)
        status = text(res[0])
        if status == "ok":
            return text(res[1]), int(res[2])
        return "shutdown" if status == "shutdown" else "changed"

    async def leave(self, workers: Sequence[str]) -> str:
        return text(await self._run("leave", list(workers)))

    async def owned_jobs(
        self, incarnation: str, workers: Sequence[str]
    ) -> dict[str, list[tuple[str, int, str]]] | None:
        """None when the node's incarnation is not the pool's (the records are not its own)."""
        res = await self._run("owned_jobs", [incarnation, *workers])
        if res == 0:
            return None
        out: dict[str, list[tuple[str, int, str]]] = {}
        for worker, flat in res:
            out[text(worker)] = [
                (text(flat[i]), int(flat[i + 1]), text(flat[i + 2])) for i in range(0, len(flat), 3)
            ]
        return out

    async def pool_workers(self) -> list[WorkerEntry]:
        """Every registered worker."""
        flat = await self._run("pool_workers", [])
        return [
            WorkerEntry(text(flat[i]), bytes(flat[i + 1]), int(flat[i + 2]))
            for i in range(0, len(flat), 3)
        ]

    async def job_infos(self, keys: Sequence[str]) -> list[bytes | None]:
        """The packed info of each job, in order: None when missing, b"corrupt" when corrupt."""
        res = await self._run("job_infos", ["keys", *keys])
        return [None if raw is None else bytes(raw) for raw in res[1:]]

    async def worker_job_infos(
        self, worker: str, cursor: str, count: int
    ) -> tuple[str, list[bytes]]:
        """One page of the packed infos of a worker's jobs, and the cursor of the next page
        ('0' when there is none)."""
        res = await self._run("job_infos", ["worker", worker, cursor, count])
        return text(res[0]), [bytes(raw) for raw in res[1:]]

    async def started(self, outcomes: Sequence[Started]) -> list[Verdict]:
        args: list[str | int] = []
        for o in outcomes:
            args += [o.key, o.worker, o.epoch, o.outcome, o.message]
        return [
            Verdict(text(v[0]), int(v[1])) if isinstance(v, list) else Verdict(text(v))
            for v in await self._run("started", args)
        ]

    async def stop(self, key: str, node: str, request: int, keep_ms: int) -> str:
        """``keep_ms``: how long the caller may retry this request (the memo lives as long)."""
        return text((await self._run("stop", [key, node, request, keep_ms]))[0])

    async def stopped(self, stops: Sequence[Stopped]) -> int:
        """The jobs waiting to be routed (due now), when a slot was freed (else 0)."""
        args: list[str | int] = []
        for stop in stops:
            args += [stop.key, stop.worker, stop.epoch]
        return int(await self._run("stopped", args))

    async def notify(
        self, key: str, payload: bytes, node: str, request: int, keep_ms: int, max_notes: int
    ) -> tuple[str, int]:
        """(status, notes waiting when 'full')."""
        res = await self._run("notify", [key, payload, node, request, keep_ms, max_notes])
        return text(res[0]), int(res[1]) if len(res) > 1 else 0

    async def take_notes(
        self, key: str, worker: str, epoch: int, request: int, keep_ms: int
    ) -> list[bytes]:
        """``request``: unique per worker; a retry with it returns what the first call took."""
        args: list[str | int] = [key, worker, epoch, request, keep_ms]
        return [bytes(p) for p in await self._run("take_notes", args)]

    async def ticker(self, name: str, interval_ms: int) -> None:
        await self._run("ticker", [name, interval_ms])

    async def shutdown(self, incarnation: str, ttl_ms: int) -> ShutdownTimes | None:
        """The times of the shutdown under way; None when the node's incarnation is not the
        pool's."""
        res = await self._run("shutdown", [incarnation, ttl_ms])
        return ShutdownTimes(int(res[1]), int(res[2])) if text(res[0]) == "ok" else None

    async def purge(
        self, incarnation: str, overdue_only: bool, limit: int, tombstone_ms: int
    ) -> PurgeStep:
        res = await self._run(
            "purge",
            [incarnation, int(overdue_only), limit, tombstone_ms, self._schedule_template],
        )
        return PurgeStep(text(res[0]), text(res[1]), int(res[2]), int(res[3]))

    async def tick(
        self, name: str, interval_ms: int, incarnation: str
    ) -> Tick | Literal["stopped", "changed"]:
        """'stopped' once the ticker was stopped; 'changed' when the node's incarnation is
        not the pool's (the node's heartbeat settles it)."""
        res = await self._run("tick", [name, interval_ms, incarnation])
        status = text(res[0])
        if status in ("stopped", "changed"):
            return "stopped" if status == "stopped" else "changed"
        return Tick(text(res[0]) == "won", int(res[1]), int(res[2]), int(res[3]), int(res[4]))

    async def withdraw(
        self, key: str, node: str, request: int, call: int, keep_ms: int
    ) -> Withdrawal:
        res = await self._run("withdraw", [key, node, request, call, keep_ms])
        if text(res[0]) == "withdrawn":
            return Withdrawal("withdrawn", text(res[1]), text(res[2]))
        return Withdrawal(text(res[0]), "", "")

"""Connections to Redis, what counts as a transient failure of one, and the public API's error
boundary: nothing from redis-py gets past it."""

from __future__ import annotations

import asyncio
import functools
import os
import re
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast

import redis.asyncio as aioredis
import redis.exceptions as rex
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from structlog.typing import FilteringBoundLogger

from ._tasks import within
from .errors import (
    EventLoopError,
    InvalidArgumentError,
    PoolError,
    RedisConfigError,
    RedisFullError,
    RedisUnavailableError,
)

T = TypeVar("T")
P = ParamSpec("P")

# Connection loss, timeouts and LOADING (a restarting server): worth retrying.
TRANSIENT: tuple[type[BaseException], ...] = (
    rex.ConnectionError,
    rex.TimeoutError,
    asyncio.TimeoutError,
    OSError,
)

# Refusals no retry can fix (redis-py makes the first two ConnectionErrors): raised at once.
REFUSED: tuple[type[BaseException], ...] = (
    rex.AuthenticationError,
    rex.AuthorizationError,
    rex.NoPermissionError,
    rex.AuthenticationWrongNumberOfArgsError,
)

# What the error boundary translates.
_FOREIGN: tuple[type[BaseException], ...] = (rex.RedisError, RuntimeError, *TRANSIENT)

# ... and what retry_transient raises once it gives up.
UNREACHABLE: tuple[type[BaseException], ...] = (RedisUnavailableError, *TRANSIENT)

MIN_VERSION = (7, 0)  # script flags (allow-oom), used by the lease renewal


def awaitable(result: Awaitable[T] | T) -> Awaitable[T]:
    """redis-py types every command as ``Awaitable[T] | T``; on redis.asyncio it is the
    former."""
    return cast(Awaitable[T], result)


MAX_CONNECTIONS = 50  # the default of add_node(max_connections=)
SOCKET_TIMEOUT = 10.0  # for a client with no lease to go by (purge_pool)


def connect(
    target: aioredis.Redis | str,
    max_connections: int = MAX_CONNECTIONS,
    socket_timeout: float = SOCKET_TIMEOUT,
) -> tuple[aioredis.Redis, bool]:
    """A client that returns bytes, and whether redpool owns (and so closes) it. A client
    redpool creates has at most ``max_connections`` connections (callers beyond wait for
    one) and, unless the URL sets its own, ``socket_timeout``: a call on a half-open
    connection then fails and is retried on a new one instead of hanging for good."""
    if isinstance(target, str):
        try:
            pool = aioredis.BlockingConnectionPool.from_url(
                target,
                max_connections=max_connections,
                timeout=None,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
            )
        except ValueError as exc:
            raise InvalidArgumentError(
                f"invalid Redis URL {_redact(target)!r}: {exc}; expected "
                "redis://[[user]:password@]host[:port][/db] (or rediss:// or unix://)"
            ) from exc
        return aioredis.Redis.from_pool(pool), True
    if not isinstance(target, aioredis.Redis):
        raise InvalidArgumentError(
            f"redis must be a redis.asyncio.Redis or a URL string, got {type(target).__name__}"
        )
    if not target.connection_pool.connection_kwargs.get("decode_responses"):
        return target, False
    # redpool stores msgpack: it needs bytes, so it opens its own pool to the same server.
    return sibling(target, max_connections), True


def sibling(client: aioredis.Redis, max_connections: int, **overrides: Any) -> aioredis.Redis:
    """A new client to the same server with its own bounded pool, returning bytes."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "decode_responses": False, **overrides}
    own = aioredis.BlockingConnectionPool(
        connection_class=pool.connection_class,
        max_connections=max_connections,
        timeout=None,
        **kwargs,
    )
    return aioredis.Redis.from_pool(own)


def reader_client(client: aioredis.Redis, block_s: float) -> aioredis.Redis:
    """The blocking inbox read's own connection: cancelling the read on close must not break
    a connection others use. It has no socket timeout (a user's shorter than the block would
    cut every read); the reader bounds each read by ``reader_timeout`` instead, which turns a
    half-open connection into an error within about one block interval, and the cancelled
    read drops its connection. redis-py's own retry is off: it would multiply that time."""
    timeout = reader_timeout(block_s)
    return sibling(
        client,
        1,
        socket_timeout=None,
        socket_connect_timeout=timeout,
        socket_keepalive=True,
        health_check_interval=block_s,
        retry=Retry(NoBackoff(), 0),
    )


def reader_timeout(block_s: float) -> float:
    """How long the reader waits for an XREAD that blocks ``block_s`` seconds."""
    return block_s + max(1.0, block_s / 2)


class Lane:
    """A connection of its own for one hot script (admit on the dispatching side, started on
    the worker side). A call on it skips the pool's checkout (a lock and a health-check read)
    and redis-py's send timeout (a task per command); its caller bounds the whole call by
    ``timeout`` (the client's socket timeout) instead. One call at a time: a call made while
    it is busy takes a connection of the pool, so it never limits concurrency."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._pool = client.connection_pool
        self.timeout: float | None = self._pool.connection_kwargs.get("socket_timeout")
        self._conn: AbstractConnection | None = None
        self._busy = False

    def take(self) -> AbstractConnection | None:
        """The lane's connection (connected on first use), or None while a call is on it."""
        if self._busy:
            return None
        self._busy = True
        if self._conn is None:
            kwargs = {**self._pool.connection_kwargs, "socket_timeout": None}
            self._conn = self._pool.connection_class(**kwargs)
        return self._conn

    def give_back(self) -> None:
        self._busy = False

    async def aclose(self) -> None:
        if self._conn is not None:
            await self._conn.disconnect()


def address(client: aioredis.Redis) -> str:
    """Where ``client`` connects, for error messages (never its password)."""
    kw = client.connection_pool.connection_kwargs
    if "path" in kw:
        return f"unix:{kw['path']}"
    return f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"


def _redact(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", url)


def reason(exc: BaseException) -> str:
    """What went wrong, in words: an asyncio timeout has none of its own, and redis-py's
    connection errors leave out the system's (say "Connection refused")."""
    text = str(exc) or f"no reply in time ({type(exc).__name__})"
    context = exc.__context__
    if isinstance(context, OSError) and context.errno and context.errno > 0:
        system = os.strerror(context.errno)
        if system not in text:
            text = f"{text} ({system})"
    return text


def refused(exc: BaseException) -> bool:
    """A refusal a retry cannot fix: wrong credentials, or an ACL denial (also one raised
    by a command inside a script)."""
    return isinstance(exc, REFUSED) or (isinstance(exc, rex.ResponseError) and "NOPERM" in str(exc))


def translate(exc: BaseException, where: str) -> BaseException:
    """The PoolError that ``exc`` (raised by redis-py or asyncio) means for a user; anything
    else is returned as it is."""
    if isinstance(exc, PoolError):
        return exc
    if refused(exc):
        return RedisConfigError(
            f"Redis at {where} refused redpool: {exc}; check the password and that the ACL "
            "user may run EVALSHA and redpool's commands on the pool's keys"
        )
    if isinstance(exc, rex.OutOfMemoryError):
        return RedisFullError(
            f"Redis at {where} is out of memory (maxmemory): {exc}; the operation did not "
            "take effect; free memory or raise maxmemory, then retry"
        )
    if isinstance(exc, rex.ResponseError) and "DB index is out of range" in str(exc):
        return RedisConfigError(f"Redis at {where}: {exc}; use a db number the server has")
    if isinstance(exc, TRANSIENT):
        return RedisUnavailableError(f"Redis at {where} unreachable: {reason(exc)}")
    if isinstance(exc, RuntimeError) and "different loop" in str(exc):
        return EventLoopError(
            "this node's connections belong to another event loop; use a node only in the "
            "event loop that created it"
        )
    if isinstance(exc, rex.RedisError):
        return PoolError(f"Redis at {where} answered with an error: {exc!r}")
    return exc


class Boundary:
    """The public API's error boundary for one node: redis-py errors become PoolErrors that
    name the server, and a call from another event loop is refused before it can break a
    connection."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.where = address(client)
        self._loop = asyncio.get_running_loop()

    def check_loop(self) -> None:
        if asyncio.get_running_loop() is not self._loop:
            raise EventLoopError(
                "this node was created in another event loop; a node (and its redis client) "
                "can be used only in the event loop that created it"
            )


class Guarded(Protocol):
    @property
    def _boundary(self) -> Boundary: ...


S = TypeVar("S", bound=Guarded)


def public(
    method: Callable[Concatenate[S, P], Awaitable[T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Put a public async method behind its object's error boundary."""

    async def guarded(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        boundary = self._boundary
        boundary.check_loop()
        try:
            return await method(self, *args, **kwargs)
        except _FOREIGN as exc:
            mapped = translate(exc, boundary.where)
            if mapped is exc:
                raise
            raise mapped from exc

    return functools.wraps(method)(guarded)


async def retry_transient(call: Callable[[], Awaitable[T]], deadline: float, what: str) -> T:
    """Run ``call`` until it succeeds, retrying transient failures with backoff until
    ``deadline`` (monotonic); then raise RedisUnavailableError. A refusal (credentials,
    ACL) is raised at once: no retry fixes it."""
    delay = 0.02
    while True:
        remaining = deadline - time.monotonic()
        try:
            return await within(call(), max(remaining, 0.001))
        except TRANSIENT as exc:
            if refused(exc):
                raise
            if time.monotonic() + delay >= deadline:
                raise RedisUnavailableError(f"{what}: Redis unreachable: {reason(exc)}") from exc
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


class Outage:
    """Rate-limited reports of a node's failing background loops, shared by its loops: each
    loop's first failure of a spell is a warning, its later ones at most one per
    ``WARN_EVERY`` seconds (with the count so far), and once every failing loop succeeded
    again one info line. An outage thus logs a line per loop, not one per retry."""

    WARN_EVERY = 30.0

    def __init__(self, log: FilteringBoundLogger) -> None:
        self._log = log
        self._next_warning: dict[str, float] = {}  # the failing loops
        self._since = 0.0
        self._failures = 0
        self._unreachable = False

    def failed(self, loop: str, exc: BaseException, retry_in: float) -> None:
        now = time.monotonic()
        if not self._next_warning:
            self._since = now
        self._failures += 1
        self._unreachable = self._unreachable or isinstance(exc, TRANSIENT)
        if now >= self._next_warning.setdefault(loop, now):
            self._next_warning[loop] = now + self.WARN_EVERY
            self._log.warning(
                "background loop failed; retrying",
                loop=loop,
                error=f"{type(exc).__name__}: {reason(exc)}",
                failures=self._failures,
                retry_in=round(retry_in, 3),
                next_report_in=self.WARN_EVERY,
            )

    def succeeded(self, loop: str) -> None:
        if self._next_warning.pop(loop, None) is None or self._next_warning:
            return
        self._log.info(
            "Redis reachable again" if self._unreachable else "background loops recovered",
            down_for=round(time.monotonic() - self._since, 1),
            failures=self._failures,
        )
        self._failures, self._unreachable = 0, False


async def wait_ready(client: aioredis.Redis, connect_timeout: float) -> None:
    """Wait up to ``connect_timeout`` seconds for Redis to answer (it may still be starting:
    a compose file, a restart), as arq does; 0 means one attempt."""

    async def ping() -> bool:
        return await awaitable(client.ping())

    if connect_timeout:
        await retry_transient(ping, time.monotonic() + connect_timeout, "connecting")
    else:
        await ping()


def join_error(
    exc: BaseException, pool_name: str, where: str, connect_timeout: float
) -> BaseException:
    """What a failed add_node raises: ``exc`` translated, saying which pool could not join."""
    if isinstance(exc, RedisUnavailableError) or (isinstance(exc, TRANSIENT) and not refused(exc)):
        cause = exc.__cause__ if isinstance(exc, RedisUnavailableError) else exc
        return RedisUnavailableError(
            f"cannot join pool {pool_name!r}: Redis at {where} not reachable within "
            f"connect_timeout={connect_timeout:g}s: {reason(cause or exc)}; check the host "
            "and port, and that Redis is running"
        )
    mapped = translate(exc, where)
    if mapped is exc or not isinstance(mapped, PoolError):
        return mapped
    return type(mapped)(f"cannot join pool {pool_name!r}: {mapped}")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


# Policies under which Redis may evict keys without a TTL: the pool's state (its only key with
# a TTL is the shutdown tombstone).
def _evicts_pool_keys(policy: str) -> bool:
    return policy.startswith("allkeys-")


async def check_server(client: aioredis.Redis, log: FilteringBoundLogger) -> None:
    """At join: refuse a server too old for redpool's scripts, and warn when its eviction
    policy may delete pool state. What an ACL or a managed Redis does not let us read is
    skipped (logged at debug level)."""
    where = address(client)
    try:
        server = await client.info("server")
    except rex.ResponseError as exc:
        log.debug("cannot read the Redis version; not checked", error=str(exc))
    else:
        version = str(server.get("redis_version", ""))
        if _version(version) < MIN_VERSION:
            raise RedisConfigError(
                f"Redis at {where} is version {version}; redpool needs Redis 7.0 or newer"
            )
    policy = await _eviction_policy(client, log)
    if policy is not None and _evicts_pool_keys(policy):
        log.warning(
            "Redis may evict this pool's keys: jobs would vanish silently under memory "
            "pressure; set maxmemory-policy to noeviction (or a volatile-* policy)",
            redis=where,
            maxmemory_policy=policy,
        )


async def _eviction_policy(client: aioredis.Redis, log: FilteringBoundLogger) -> str | None:
    try:
        found = await client.config_get("maxmemory-policy")
        if "maxmemory-policy" in found:
            return str(found["maxmemory-policy"])
    except rex.ResponseError as exc:  # CONFIG is often denied on managed Redis
        log.debug("CONFIG GET denied; reading the eviction policy from INFO", error=str(exc))
    try:
        memory = await client.info("memory")
    except rex.ResponseError as exc:
        log.debug("cannot read the eviction policy; not checked", error=str(exc))
        return None
    policy = memory.get("maxmemory_policy")
    return None if policy is None else str(policy)

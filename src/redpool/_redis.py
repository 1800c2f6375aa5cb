"""Connections to Redis and what counts as a transient failure of one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

import redis.asyncio as aioredis
import redis.exceptions

from ._tasks import within
from .errors import InvalidArgumentError, RedisUnavailableError

T = TypeVar("T")

# Connection loss, timeouts and LOADING (a restarting server): worth retrying.
TRANSIENT: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    asyncio.TimeoutError,
    OSError,
)

# ... and what retry_transient raises once it gives up.
UNREACHABLE: tuple[type[BaseException], ...] = (RedisUnavailableError, *TRANSIENT)


def awaitable(result: Awaitable[T] | T) -> Awaitable[T]:
    """redis-py types every command as ``Awaitable[T] | T``; on redis.asyncio it is the
    former."""
    return cast(Awaitable[T], result)


def connect(target: aioredis.Redis | str) -> tuple[aioredis.Redis, bool]:
    """A client that returns bytes, and whether redpool owns (and so closes) it."""
    if isinstance(target, str):
        return aioredis.Redis.from_url(target), True
    if not isinstance(target, aioredis.Redis):
        raise InvalidArgumentError(
            f"redis must be a redis.asyncio.Redis or a URL string, got {type(target).__name__}"
        )
    if not target.connection_pool.connection_kwargs.get("decode_responses"):
        return target, False
    # redpool stores msgpack: it needs bytes, so it opens its own pool to the same server.
    return sibling(target), True


def sibling(client: aioredis.Redis, max_connections: int | None = None) -> aioredis.Redis:
    """A new client to the same server with its own connection pool, returning bytes."""
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "decode_responses": False}
    if max_connections is not None:
        kwargs["max_connections"] = max_connections
    own = aioredis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    return aioredis.Redis(connection_pool=own)


async def retry_transient(call: Callable[[], Awaitable[T]], deadline: float, what: str) -> T:
    """Run ``call`` until it succeeds, retrying transient failures with backoff until
    ``deadline`` (monotonic); then raise RedisUnavailableError."""
    delay = 0.02
    while True:
        remaining = deadline - time.monotonic()
        try:
            return await within(call(), max(remaining, 0.001))
        except TRANSIENT as exc:
            if time.monotonic() + delay >= deadline:
                raise RedisUnavailableError(f"{what}: Redis unavailable ({exc!r})") from exc
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)

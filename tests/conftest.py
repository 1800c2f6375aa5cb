"""Fixtures: a shared real redis-server per session (pools isolate tests from each other),
and fresh servers for tests that restart or break theirs."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
import redis.asyncio as aioredis

from tests.redis_server import RedisServer

_pool_ids = itertools.count()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def fresh_redis() -> Iterator[Callable[..., RedisServer]]:
    """Factory of dedicated servers (appendonly=True for restart tests)."""
    servers: list[RedisServer] = []

    def make(appendonly: bool = False) -> RedisServer:
        server = RedisServer(appendonly=appendonly)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def pool_name(request: pytest.FixtureRequest) -> str:
    return f"t{os.getpid()}-{next(_pool_ids)}-{request.node.name[:40]}".replace("[", "-").replace(
        "]", ""
    )


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()

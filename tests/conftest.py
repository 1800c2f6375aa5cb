"""Fixtures: a shared real redis-server per session (pools isolate tests from each other),
and fresh servers for tests that restart or break theirs."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import redpool
from redpool._scripts import sources
from redpool.tasks._scripts import _sources as task_sources
from tests.procs import Member
from tests.proxy import Proxy
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
    """Factory of dedicated servers (appendonly=True for restart tests; more redis-server
    options as further arguments)."""
    servers: list[RedisServer] = []

    def make(appendonly: bool = False, *extra: str) -> RedisServer:
        server = RedisServer(appendonly=appendonly, extra=extra)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.cleanup()


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[Proxy]:
    """A proxy to the test's Redis (``proxy.url``): blackholes, loses replies, cuts."""
    proxy = Proxy(redis_server.port)
    proxy.start()
    yield proxy
    proxy.stop()


def script_sha(name: str) -> bytes:
    """What the EVALSHA of script ``name`` (the core's or a task script) carries: the marker
    for ``Proxy.lose_reply_to``."""
    source = {**sources(), **task_sources()}[name]
    return hashlib.sha1(source.encode()).hexdigest().encode()


@pytest.fixture
async def via_proxy(
    proxy: Proxy, pool_name: str, redis: aioredis.Redis
) -> AsyncIterator[Callable[..., Awaitable[redpool.Node]]]:
    """Nodes of the test's pool whose every connection goes through the proxy. Every script is
    loaded first: a lost reply is then always that of a script that ran (not of a NOSCRIPT
    answer)."""
    for source in [*sources().values(), *task_sources().values()]:
        await redis.script_load(source)
    nodes: list[redpool.Node] = []

    async def make(**options: Any) -> redpool.Node:
        options.setdefault("worker_ttl", 1.0)
        options.setdefault("job_sink_block", 1.0)
        node = await redpool.add_node(pool_name, proxy.url, **options)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.close()


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


@pytest.fixture
async def make_node(
    redis_url: str, pool_name: str
) -> AsyncIterator[Callable[..., Awaitable[redpool.Node]]]:
    """Nodes of this test's pool (short TTLs keep the tests quick); all closed at the end."""
    nodes: list[redpool.Node] = []

    async def make(**options: Any) -> redpool.Node:
        options.setdefault("worker_ttl", 1.0)
        options.setdefault("ack_grace_period", 1.0)
        options.setdefault("job_sink_block", 1.0)
        node = await redpool.add_node(options.pop("pool", pool_name), redis_url, **options)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        if not node.is_closed():
            await node.close()


@pytest.fixture
def events_file(tmp_path: Path) -> Path:
    return tmp_path / "events.log"


@pytest.fixture
async def members(
    redis_url: str, pool_name: str, events_file: Path
) -> AsyncIterator[Callable[..., Awaitable[Member]]]:
    """Pool member processes (tests/proc.py); terminated at the end."""
    started: list[Member] = []

    async def start(*args: str, url: str | None = None) -> Member:
        member = await Member.start(url or redis_url, pool_name, events_file, *args)
        started.append(member)
        return member

    yield start
    await asyncio.gather(*(m.terminate() for m in started))

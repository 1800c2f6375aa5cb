"""Logs carry pool/node/worker ids; transient Redis errors never kill a background loop."""

from __future__ import annotations

import contextlib

import redis.asyncio as aioredis
import structlog

import redpool
from tests.helpers import Recorder, eventually


async def test_log_entries_carry_pool_node_and_worker_ids(make_node, pool_name):
    with structlog.testing.capture_logs() as logs:
        node = await make_node()
        handler = Recorder()
        handler.fail_with = RuntimeError("nope")
        worker = await node.add_worker(handler)
        with contextlib.suppress(redpool.JobStartError):
            await node.dispatch_job("k")
    joined = next(e for e in logs if e["event"] == "node joined")
    assert (joined["pool"], joined["node"]) == (pool_name, node.id)
    failed = next(e for e in logs if e["event"] == "start failed")
    assert (failed["worker"], failed["key"]) == (worker.id, "k")


async def test_killed_connections_are_logged_retried_and_serving_goes_on(
    make_node, redis: aioredis.Redis
):
    with structlog.testing.capture_logs() as logs:
        node = await make_node(worker_ttl=2.0)
        handler = Recorder()
        await node.add_worker(handler)
        await node.dispatch_job("before")
        me = (await redis.client_info())["id"]
        for _ in range(3):
            for client in await redis.client_list():
                if int(client["id"]) != me:
                    await redis.client_kill_filter(_id=client["id"])
        await eventually(
            lambda: any(e["event"] == "background loop failed; retrying" for e in logs),
            what="a loop noticed",
        )
        await node.dispatch_job("after")
    assert sorted(handler.running) == ["after", "before"]
    assert all(not t.done() for t in node._tasks), "a background loop died"

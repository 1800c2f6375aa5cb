"""Lost replies: a mutating script ran, its reply never came back, and the caller retried it.
Each retry carries the first call's request id, so it answers what the first call did and
changes nothing again (redis-py's own blind retry is off for script calls)."""

from __future__ import annotations

import asyncio

import pytest

import redpool
from tests.conftest import script_sha
from tests.helpers import Recorder, eventually


async def _no_jobs(node: redpool.Node) -> bool:
    return await node.job_keys() == []


# Three replies in a row are lost, so the last retry comes after the job's start() returned
# and its record changed (the retries back off 20, 40, 80 ms).
LOST = 3


async def test_a_retried_admit_whose_job_already_started_is_not_refused(
    make_node, via_proxy, proxy
):
    handler = Recorder()
    await (await make_node()).add_worker(handler)
    client = await via_proxy(client_only=True, ack_grace_period=5.0)
    proxy.lose_reply_to(script_sha("admit"), LOST)
    await client.dispatch_job("k")  # was JobExistsError: the job had started, r was cleared
    assert proxy.lost == LOST
    assert handler.started == ["k"]


async def test_a_retried_admit_of_a_job_whose_start_failed_does_not_start_it_again(
    make_node, via_proxy, proxy
):
    worker_node = await make_node()
    handler = Recorder()
    handler.fail_with = RuntimeError("no")
    starts: list[str] = []
    plain_start = handler.start

    async def counting_start(job: redpool.Job) -> None:
        starts.append(job.key)
        await plain_start(job)

    handler.start = counting_start  # type: ignore[method-assign]
    await worker_node.add_worker(handler)
    client = await via_proxy(client_only=True, ack_grace_period=5.0)
    proxy.lose_reply_to(script_sha("admit"))
    with pytest.raises(redpool.JobStartError, match="RuntimeError: no"):
        await client.dispatch_job("k")
    assert proxy.lost == 1
    await eventually(lambda: _no_jobs(worker_node), what="key free")
    assert starts == ["k"]  # the retry did not admit it a second time


async def test_a_retried_withdraw_still_raises_dispatch_timeout(make_node, via_proxy, proxy):
    worker_node = await make_node()
    handler = Recorder()
    handler.gate = asyncio.Event()
    await worker_node.add_worker(handler)
    client = await via_proxy(client_only=True, ack_grace_period=0.25)
    proxy.lose_reply_to(script_sha("withdraw"))
    try:
        # Was a normal return: the retry found the job stopping with no waiter, "started".
        with pytest.raises(redpool.DispatchTimeoutError, match="did not return in time"):
            await client.dispatch_job("k")
        assert proxy.lost == 1
    finally:
        handler.gate.set()
    await eventually(lambda: _no_jobs(worker_node), what="stopped after its late start")
    assert handler.stopped == ["k"]


async def test_a_retried_notify_delivers_once(make_node, via_proxy, proxy):
    handler = Recorder()
    await (await make_node()).add_worker(handler)
    client = await via_proxy(client_only=True)
    await client.dispatch_job("k")
    proxy.lose_reply_to(script_sha("notify"), LOST)
    await client.notify_worker("k", b"once")
    assert proxy.lost == LOST
    await client.notify_worker("k", b"after")
    await eventually(lambda: ("k", b"after") in handler.notifications, what="both delivered")
    assert handler.notifications == [("k", b"once"), ("k", b"after")]


async def test_a_retried_stop_that_worked_returns(make_node, via_proxy, proxy):
    handler = Recorder()
    await (await make_node()).add_worker(handler)
    client = await via_proxy(client_only=True)
    await client.dispatch_job("k")
    proxy.lose_reply_to(script_sha("stop"), LOST)
    await client.stop_job("k")  # was JobNotFoundError: the owner had freed the key meanwhile
    assert proxy.lost == LOST
    assert handler.stopped == ["k"]
    assert await client.job_keys() == []


async def test_a_retried_take_of_notifications_still_delivers_them(make_node, via_proxy, proxy):
    handler = Recorder()
    worker_node = await via_proxy(worker_ttl=2.0)
    await worker_node.add_worker(handler)
    client = await make_node(client_only=True)
    await client.dispatch_job("k")
    proxy.lose_reply_to(script_sha("take_notes"))
    await client.notify_worker("k", b"once")
    # Was lost: the first take deleted the notes, its retry found none.
    await eventually(lambda: ("k", b"once") in handler.notifications, what="delivered")
    assert proxy.lost == 1
    await client.notify_worker("k", b"after")
    await eventually(lambda: ("k", b"after") in handler.notifications, what="both delivered")
    assert handler.notifications == [("k", b"once"), ("k", b"after")]

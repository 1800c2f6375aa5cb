"""stop_job reaches the current owner, even while the job is still starting."""

from __future__ import annotations

import asyncio

import pytest

import redpool
from redpool._scripts import Stopped
from tests.helpers import Recorder, eventually


async def test_stop_returns_after_stop_ran_and_the_key_can_be_dispatched_again(make_node):
    node = await make_node()
    handler = Recorder()
    await node.add_worker(handler)
    await node.dispatch_job("k")
    await node.stop_job("k")
    assert handler.stopped == ["k"]
    assert await node.job_keys() == []
    await node.dispatch_job("k")
    assert handler.started == ["k", "k"]


async def test_stop_while_starting_waits_for_start_then_stops(make_node):
    node = await make_node(ack_grace_period=5.0)
    handler = Recorder()
    handler.gate = asyncio.Event()
    await node.add_worker(handler)
    dispatch = asyncio.create_task(node.dispatch_job("k"))
    await eventually(lambda: _claimed(node), what="start under way")
    stop = asyncio.create_task(node.stop_job("k"))
    await asyncio.sleep(0)
    assert not stop.done()
    handler.gate.set()
    await asyncio.gather(dispatch, stop)
    assert (handler.started, handler.stopped) == (["k"], ["k"])
    await node.dispatch_job("k")


async def test_stop_of_a_queued_job_removes_it_before_it_starts(make_node):
    node = await make_node(ack_grace_period=5.0)
    dispatch = asyncio.create_task(node.dispatch_job("queued"))
    await eventually(lambda: _claimed_or_queued(node), what="admitted")
    await node.stop_job("queued")
    with pytest.raises(redpool.JobStartError, match="stopped before it started"):
        await dispatch
    handler = Recorder()
    await node.add_worker(handler)
    await node.dispatch_job("after")
    assert handler.started == ["after"]


async def test_stopping_an_unknown_key_raises_job_not_found(make_node):
    node = await make_node()
    with pytest.raises(redpool.JobNotFoundError):
        await node.stop_job("nope")


async def test_a_stale_stop_report_does_not_free_the_next_job_of_the_key(make_node):
    node = await make_node()
    handler = Recorder()
    worker = await node.add_worker(handler)
    await node.dispatch_job("k")
    first = handler.running["k"].epoch
    await node.stop_job("k")
    await node.dispatch_job("k")
    second = handler.running["k"].epoch
    assert second > first  # epochs never repeat for a key, across admissions
    gate = asyncio.Event()
    plain_stop = handler.stop

    async def slow_stop(key: str) -> None:
        await gate.wait()
        await plain_stop(key)

    handler.stop = slow_stop  # type: ignore[method-assign]
    stopping = asyncio.create_task(node.stop_job("k"))
    try:
        await eventually(lambda: _state_is(node, "k", "stopping"), what="stop under way")
        # A report about the first job arriving late (a retry, a slow worker) frees nothing.
        assert await node._scripts.stopped([Stopped("k", worker.id, first)]) == 0
        assert await node.job_keys() == ["k"]
    finally:
        gate.set()
    await stopping
    assert await node.job_keys() == []


async def _state_is(node: redpool.Node, key: str, state: str) -> bool:
    from redpool._codec import decode_record

    raw = await node._client.hget(node._keys.jobs, key)
    return raw is not None and decode_record(raw).state == state


async def _claimed(node: redpool.Node) -> bool:
    return any(w._jobs for w in node.workers())


async def _claimed_or_queued(node: redpool.Node) -> bool:
    return await node.job_keys() == ["queued"]

"""A worker's handler calls are bounded: a start() or stop() that does not return never holds
its key or the node for good; sync handlers run in threads of their own, stops apart from
starts; a stop request always gets its report."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import structlog

import redpool
from tests.helpers import eventually


class SyncHandler:
    """A sync handler: start() of a key in ``gated`` waits until ``gate`` is set; it records
    whether the job was still owned when start() began."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.gate = threading.Event()
        self.gated: set[str] = set()
        self.entered: list[str] = []
        self.started: list[str] = []
        self.owned_at_start: list[bool] = []
        self.stopped: list[str] = []

    def start(self, job: redpool.Job) -> None:
        self.entered.append(job.key)
        self.owned_at_start.append(job.is_owned())
        if job.key in self.gated:
            self.gate.wait()
        time.sleep(self.delay)
        self.started.append(job.key)

    def stop(self, key: str) -> None:
        self.stopped.append(key)


class GatedAsync:
    """An async handler whose start() of ``hang`` never returns and whose stop() waits for
    ``stop_gate`` when it is set up."""

    def __init__(self) -> None:
        self.stop_gate: asyncio.Event | None = None
        self.stopping: list[str] = []
        self.stopped: list[str] = []

    async def start(self, job: redpool.Job) -> None:
        if job.payload == b"hang":
            await asyncio.Event().wait()

    async def stop(self, key: str) -> None:
        self.stopping.append(key)
        if self.stop_gate is not None:
            await self.stop_gate.wait()
        self.stopped.append(key)


async def test_an_async_start_that_never_returns_fails_the_dispatch_and_frees_the_key(make_node):
    node = await make_node(start_timeout=0.3, ack_grace_period=5.0)
    await node.add_worker(GatedAsync())
    late = r"start\(\) did not return within 0.3s"
    with structlog.testing.capture_logs() as logs, pytest.raises(redpool.JobStartError, match=late):
        await node.dispatch_job("k", b"hang")
    assert any(e["log_level"] == "error" and "did not return" in e["event"] for e in logs)
    await node.dispatch_job("k")
    await node.stop_job("k")


async def test_a_sync_start_that_overruns_is_warned_about_then_stopped_and_fails(make_node):
    node = await make_node(start_timeout=0.2, ack_grace_period=5.0)
    handler = SyncHandler(delay=0.7)
    await node.add_worker(handler)
    late = r"returned after .* and was stopped"
    with structlog.testing.capture_logs() as logs, pytest.raises(redpool.JobStartError, match=late):
        await node.dispatch_job("k")
    assert handler.stopped == ["k"]
    assert any("cannot be cancelled" in e["event"] for e in logs)
    assert await node.job_keys() == []


async def test_close_returns_although_a_sync_start_never_returns(make_node):
    node = await make_node(worker_shutdown_ttl=0.5, start_timeout=30.0, ack_grace_period=30.0)
    handler, dispatch = await _stuck_start(node, "stuck")
    with structlog.testing.capture_logs() as logs:
        await asyncio.wait_for(node.close(), 10)
    abandoned = next(e for e in logs if e["event"].startswith("handlers did not return"))
    assert abandoned["keys"] == ["stuck"]
    with pytest.raises(redpool.PoolClosedError):
        await dispatch
    handler.gate.set()


async def test_a_stop_that_never_returns_is_abandoned_and_the_key_freed(make_node):
    node = await make_node(worker_shutdown_ttl=0.3, ack_grace_period=5.0)
    handler = GatedAsync()
    handler.stop_gate = asyncio.Event()  # never set
    await node.add_worker(handler)
    await node.dispatch_job("k")
    with structlog.testing.capture_logs() as logs:
        await node.stop_job("k")
    assert handler.stopping == ["k"] and handler.stopped == []
    assert any("stop() did not return" in e["event"] for e in logs)
    await node.dispatch_job("k")


async def test_fencing_cancels_an_async_start_under_way_and_the_job_starts_again(make_node):
    node = await make_node(worker_ttl=1.0, ack_grace_period=5.0, start_timeout=30.0)
    handler = FirstStartHangs()
    await node.add_worker(handler)
    dispatch = asyncio.create_task(node.dispatch_job("k"))
    await eventually(lambda: handler.attempts == 1, what="the first start() under way")
    time.sleep(1.0)  # noqa: ASYNC251 - the event loop stalls past the fence time: fenced
    await dispatch  # the fence cancelled the first start(); the job was delivered again
    assert handler.cancelled == 1 and handler.attempts == 2


async def test_a_loop_stall_that_ends_before_the_fence_time_fences_nothing(make_node):
    # worker_ttl=8: a stall over 2 s is reported; the fence time is 6 s after a beat's send
    # (3.5 s of margin for a loaded machine's extra delays).
    node = await make_node(worker_ttl=8.0)
    handler = GatedAsync()
    await node.add_worker(handler)
    await node.dispatch_job("k")
    renewed = node._clock.fence_at
    node._lease.wake()
    await eventually(lambda: node._clock.fence_at > renewed, what="a fresh beat")
    time.sleep(2.5)  # noqa: ASYNC251 - the loop stalls past the limit, not to the fence time
    unblocked = time.monotonic()
    await eventually(lambda: node._watchdog._last > unblocked, what="the watchdog looked")
    assert not node._clock.fenced and handler.stopping == []  # the job runs on, here
    info = await node.job_info("k")
    assert info is not None and info.node_id == node.id


class FirstStartHangs:
    def __init__(self) -> None:
        self.attempts = 0
        self.cancelled = 0

    async def start(self, job: redpool.Job) -> None:
        self.attempts += 1
        if self.attempts == 1:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise

    async def stop(self, key: str) -> None:
        pass


async def test_stops_do_not_wait_behind_slow_sync_starts(make_node):
    node = await make_node(sync_threads=4, ack_grace_period=10.0)
    handler = SyncHandler()
    await node.add_worker(handler)
    await node.dispatch_job("running")
    slow = [f"slow-{i}" for i in range(8)]
    handler.gated.update(slow)
    dispatches = [asyncio.create_task(node.dispatch_job(k)) for k in slow]
    await eventually(lambda: len(handler.entered) == 1 + 4, what="every start thread busy")
    await node.stop_job("running")  # with one shared pool, this stop() would wait for a thread
    assert handler.stopped == ["running"]
    assert handler.started == ["running"]
    handler.gate.set()
    await asyncio.gather(*dispatches)


async def test_a_queued_sync_start_checks_it_still_owns_the_job_when_it_gets_a_thread(make_node):
    node = await make_node(sync_threads=1, worker_ttl=1.0, ack_grace_period=5.0)
    handler, first = await _stuck_start(node, "first")  # the only thread is busy
    second = asyncio.create_task(node.dispatch_job("second"))
    await eventually(lambda: node._host.threads.starts._queued == 1, what="its start() queued")
    time.sleep(1.0)  # noqa: ASYNC251 - the event loop stalls past the fence time
    handler.gate.set()  # the thread is free while the lease is not valid
    await asyncio.gather(first, second)  # "second" starts once the node renewed its lease
    assert "second" in handler.started
    assert all(handler.owned_at_start), list(
        zip(handler.entered, handler.owned_at_start, strict=True)
    )


async def test_a_stop_request_is_reported_when_another_stop_ran_the_job_meanwhile(make_node):
    # A long TTL: the reconciler would free the key only long after the stop's timeout.
    node = await make_node(worker_ttl=30.0, ack_grace_period=1.0)
    handler = GatedAsync()
    await node.add_worker(handler)
    keys = [f"k{i}" for i in range(20)]
    await asyncio.gather(*(node.dispatch_job(k) for k in keys))
    handler.stop_gate = asyncio.Event()
    await node.add_worker(GatedAsync())  # the rebalance stops some jobs on the first worker
    await eventually(lambda: bool(handler.stopping), what="a rebalance stop under way")
    key = handler.stopping[0]
    stop = asyncio.create_task(node.stop_job(key))  # waits for the rebalance's stop()
    await eventually(lambda: _requested(node, key), what="the stop request arrived")
    handler.stop_gate.set()
    await stop
    assert key not in await node.job_keys()


async def _stuck_start(node: redpool.Node, key: str) -> tuple[SyncHandler, asyncio.Task[None]]:
    """A worker whose sync start() of ``key`` is under way, waiting for its gate."""
    handler = SyncHandler()
    handler.gated.add(key)
    await node.add_worker(handler)
    dispatch = asyncio.create_task(node.dispatch_job(key))
    await eventually(lambda: handler.entered == [key], what="start() under way")
    return handler, dispatch


def _requested(node: redpool.Node, key: str) -> bool:
    worker = node.workers()[0]
    return any("begin_stop" in t.get_coro().__qualname__ for t in worker._tasks)


class OwnershipAtStop:
    """Records, when stop() begins, whether the job it stops still counted as owned."""

    def __init__(self) -> None:
        self.jobs: dict[str, redpool.Job] = {}
        self.owned_at_stop: list[bool] = []

    async def start(self, job: redpool.Job) -> None:
        self.jobs[job.key] = job

    async def stop(self, key: str) -> None:
        self.owned_at_stop.append(self.jobs[key].is_owned())


async def test_a_job_being_stopped_is_no_longer_owned_while_the_lease_is_fresh(make_node):
    node = await make_node()
    handler = OwnershipAtStop()
    await node.add_worker(handler)
    await node.dispatch_job("k")
    assert handler.jobs["k"].is_owned()
    await node.stop_job("k")
    assert handler.owned_at_stop == [False]

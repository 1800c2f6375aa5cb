"""dispatch_job returns once start() returned; failures and timeouts leave the key free."""

from __future__ import annotations

import asyncio

import pytest

import redpool
from tests.helpers import Recorder, eventually


async def test_dispatch_returns_after_start_returned(make_node):
    node = await make_node()
    started: list[str] = []

    class Slow:
        async def start(self, job: redpool.Job) -> None:
            await asyncio.sleep(0.2)
            started.append(job.key)

        async def stop(self, key: str) -> None:
            pass

    await node.add_worker(Slow())
    await node.dispatch_job("k", b"payload")
    assert started == ["k"]


async def test_sync_handlers_run_and_get_the_job(make_node):
    node = await make_node()
    seen: list[redpool.Job] = []

    class Sync:
        def start(self, job: redpool.Job) -> None:
            seen.append(job)

        def stop(self, key: str) -> None:
            pass

    worker = await node.add_worker(Sync())
    await node.dispatch_job("k", b"\x00\xffbinary")
    (job,) = seen
    assert (job.key, job.payload, job.worker_id, job.node_id) == (
        "k",
        b"\x00\xffbinary",
        worker.id,
        node.id,
    )
    assert job.created_at.tzinfo is not None
    assert [j.key for j in worker.jobs()] == ["k"]


async def test_start_error_is_raised_to_the_dispatcher_and_frees_the_key(make_node):
    node = await make_node()
    handler = Recorder()
    handler.fail_with = RuntimeError("disk on fire")
    await node.add_worker(handler)
    with pytest.raises(redpool.JobStartError, match="disk on fire") as info:
        await node.dispatch_job("k")
    assert info.value.key == "k"
    assert await node.job_keys() == []
    handler.fail_with = None
    await node.dispatch_job("k")
    assert handler.started == ["k"]


async def test_requeue_retries_the_start(make_node):
    node = await make_node()
    attempts: list[int] = []

    class Flaky:
        async def start(self, job: redpool.Job) -> None:
            attempts.append(job.attempt)
            if job.attempt == 0:
                raise redpool.Requeue

        async def stop(self, key: str) -> None:
            pass

    await node.add_worker(Flaky())
    await node.dispatch_job("k")
    assert attempts == [0, 1]


async def test_dispatch_timeout_withdraws_the_job_so_it_never_starts_later(make_node):
    node = await make_node(ack_grace_period=0.25)
    with pytest.raises(redpool.DispatchTimeoutError):
        await node.dispatch_job("withdrawn")
    assert await node.job_keys() == []
    handler = Recorder()
    await node.add_worker(handler)
    await node.dispatch_job("later")  # routed and started after the withdrawal
    assert handler.started == ["later"]


async def test_timeout_during_a_slow_start_stops_the_job_after_it_started(make_node):
    node = await make_node(ack_grace_period=0.25, start_timeout=5.0)  # start() outlives the wait
    handler = Recorder()
    handler.gate = asyncio.Event()
    await node.add_worker(handler)
    with pytest.raises(redpool.DispatchTimeoutError):
        await node.dispatch_job("slow")
    handler.gate.set()
    await eventually(lambda: handler.stopped == ["slow"], what="stop after the late start")
    await eventually(lambda: _empty(node), what="key freed")
    await node.dispatch_job("slow")
    assert handler.started == ["slow", "slow"]


async def _empty(node: redpool.Node) -> bool:
    return await node.job_keys() == []


async def test_a_withdrawn_fast_started_job_is_stopped_before_its_key_is_free(make_node):
    # ack grace 0.6 s: the dispatcher withdraws after 1.2 s, after the latest moment (lease
    # left 0.75 s + margin) the worker could begin start() unclaimed: so it takes the fast path.
    node = await make_node(ack_grace_period=0.6, start_timeout=5.0)
    handler = Recorder()
    handler.gate = asyncio.Event()
    await node.add_worker(handler)
    with pytest.raises(redpool.DispatchTimeoutError):
        await node.dispatch_job("k")
    with pytest.raises(redpool.JobExistsError):
        await node.dispatch_job("k")  # not free while its start() may still run
    handler.gate.set()
    await eventually(lambda: handler.stopped == ["k"], what="stopped after the late start")
    await eventually(lambda: _empty(node), what="key freed")
    await node.dispatch_job("k")
    assert handler.started == ["k", "k"]


def test_the_fast_path_only_when_start_must_begin_before_the_withdrawal():
    from redpool._options import Options

    options = Options()
    now = 1_000_000.0
    assert options.may_start_unclaimed(now, int(now + 40_000), lease_left=7.5)
    assert not options.may_start_unclaimed(now, int(now + 7_600), lease_left=7.5)
    assert not options.may_start_unclaimed(now, int(now - 1), lease_left=0.0)

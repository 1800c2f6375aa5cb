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


class Stamping:
    """Requeues every start until ``succeed_at``, stamping each with the Redis clock."""

    def __init__(self, redis, succeed_at: int = 10**9, **requeue: object) -> None:
        self.redis = redis
        self.succeed_at = succeed_at
        self.requeue = requeue
        self.stamps: list[float] = []
        self.attempts: list[int] = []

    async def start(self, job: redpool.Job) -> None:
        seconds, micros = await self.redis.time()
        self.stamps.append(seconds + micros / 1e6)
        self.attempts.append(job.attempt)
        if job.attempt < self.succeed_at:
            raise redpool.Requeue(**self.requeue)

    async def stop(self, key: str) -> None:
        pass


async def test_requeued_starts_back_off_from_half_a_second_doubling_on_the_redis_clock(
    make_node, redis
):
    # Beats every 2 s: retries that waited for the heartbeat would come about 2 s apart.
    node = await make_node(worker_ttl=6.0)
    handler = Stamping(redis, succeed_at=3)
    await node.add_worker(handler)
    await node.dispatch_job("k")
    assert handler.attempts == [0, 1, 2, 3]
    gaps = [b - a for a, b in zip(handler.stamps, handler.stamps[1:], strict=False)]
    for gap, due in zip(gaps, [0.5, 1.0, 2.0], strict=True):
        assert due <= gap < due + 0.4, gaps  # never early on the Redis clock; about on time


async def test_a_job_that_requeues_on_every_attempt_ends_and_tells_its_dispatcher(make_node):
    node = await make_node()
    handler = Stamping(node._client, delay=0.05, max_attempts=3)
    await node.add_worker(handler)
    with pytest.raises(redpool.JobStartError, match="Requeue on all 3 attempts"):
        await node.dispatch_job("k")
    assert handler.attempts == [0, 1, 2]
    assert await node.job_keys() == []


async def test_requeue_attempts_are_the_same_when_the_dispatcher_left(make_node):
    node = await make_node()
    handler = Stamping(node._client, delay=0.2, max_attempts=3)
    await node.add_worker(handler)
    client = await make_node(client_only=True)
    dispatch = asyncio.create_task(client.dispatch_job("k"))
    await eventually(lambda: handler.attempts == [0], what="first attempt")
    await client.close()  # nobody waits for this job any more
    with pytest.raises(redpool.PoolClosedError):
        await dispatch
    await eventually(lambda: _empty(node), what="the job ended after its last attempt")
    assert handler.attempts == [0, 1, 2]


def test_requeue_arguments_are_checked():
    with pytest.raises(redpool.InvalidArgumentError, match="max_attempts"):
        redpool.Requeue(max_attempts=0)
    with pytest.raises(redpool.InvalidArgumentError, match="delay"):
        redpool.Requeue(delay=-1)


async def test_dispatch_timeout_withdraws_the_job_so_it_never_starts_later(make_node):
    node = await make_node(ack_grace_period=0.25)
    with pytest.raises(redpool.DispatchTimeoutError, match="no live worker took it"):
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
    worker = await node.add_worker(handler)
    with pytest.raises(redpool.DispatchTimeoutError) as info:
        await node.dispatch_job("slow")
    assert f"worker {worker.id} took it, but its start() did not return" in str(info.value)
    assert "live workers" not in str(info.value)
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
    worker = await node.add_worker(handler)
    with pytest.raises(redpool.DispatchTimeoutError, match=f"worker {worker.id} did not report"):
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

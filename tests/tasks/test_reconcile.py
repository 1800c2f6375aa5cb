"""Runs the records give a live worker that the worker does not have (a claim's reply lost,
a fence while runs were being claimed) are handed back by the upkeep's reconciliation: every
job still ends, none stays 'running' on a worker whose lease stays valid."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from pytest import MonkeyPatch

import redpool
from redpool._keys import Keys
from tests.conftest import script_sha
from tests.helpers import eventually
from tests.proxy import Proxy
from tests.tasks.conftest import TaskWorkerProc
from tests.tasks.sample_tasks import AddParams, add, sleep, tasks

Workers = Callable[..., Awaitable[TaskWorkerProc]]
MakeNode = Callable[..., Awaitable[redpool.Node]]


async def test_a_run_whose_claim_reply_was_lost_is_handed_back_and_runs(
    make_node: MakeNode, via_proxy: Callable[..., Awaitable[redpool.Node]], proxy: Proxy
) -> None:
    # The claim made the record 'running' on the worker; the worker never learned it. Was
    # 'running' for good: nothing looked at running records of a live worker.
    worker = await via_proxy()
    await worker.add_task_worker(tasks)
    client = await make_node(client_only=True)
    proxy.lose_reply_to(script_sha("task_claim"))
    handle = await client.submit(add, AddParams(1, 2))
    assert (await handle.result(timeout=10)).total == 3
    assert proxy.lost == 1
    runs = [(run.outcome, run.reason) for run in await handle.runs()]
    assert runs == [("succeeded", None), ("interrupted", "orphaned")]
    info = await handle.info()
    assert (info.attempt, info.interrupts) == (1, 0)  # the lost run is charged neither


async def test_every_job_completes_when_its_worker_fences_without_losing_its_lease(
    make_node: MakeNode,
    task_workers: Workers,
    monkeypatch: MonkeyPatch,
    redis: aioredis.Redis,
    pool_name: str,
) -> None:
    # Paused from just after a renewal for 0.8 TTL: past its fence time (0.75 TTL after the
    # renewal was sent), not past its lease. It fences when it wakes (stops its runs, drops
    # starts), renews at once, and its stopped runs go back to their queue.
    ttl = 6.0
    monkeypatch.setenv("REDPOOL_TEST_WORKER_TTL", str(ttl))
    proc = await task_workers(20)
    client = await make_node(client_only=True)
    # 15 s of work: runs are under way at both pauses.
    handles = await client.submit_many([(sleep, {"s": 0.5}) for _ in range(600)])
    leases = Keys(pool_name).leases
    for _ in range(2):
        renewed = await redis.zscore(leases, proc.node_id)

        async def beat(renewed: float | None = renewed) -> bool:
            return await redis.zscore(leases, proc.node_id) != renewed

        await eventually(beat, what="a renewal of the worker's lease")
        proc.proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(0.8 * ttl)  # the fault's length
        proc.proc.send_signal(signal.SIGCONT)
    for handle in handles:
        assert (await handle.wait(timeout=60)).status is redpool.Status.SUCCEEDED
    reasons = {run.reason for handle in handles for run in await handle.runs()}
    assert "fenced" in reasons  # it did fence: its runs were stopped and run again
    assert "lost" not in reasons  # the lease held throughout: nothing was reaped

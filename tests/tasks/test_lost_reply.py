"""Lost replies to the tasks layer's mutating calls: the script ran, its reply never came
back, and the caller retried it (as tests/faults/test_lost_reply.py does for the pool core).
Three replies in a row are lost, so the last retry comes after the record changed."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import redpool
from tests.conftest import script_sha
from tests.helpers import eventually
from tests.proxy import Proxy
from tests.tasks.sample_tasks import AddParams, AddResult, add, sleep, tasks

MakeNode = Callable[..., Awaitable[redpool.Node]]
LOST = 3


async def test_a_retried_submit_admits_once_and_returns_the_handle(
    make_node: MakeNode, via_proxy, proxy: Proxy
) -> None:
    # Already safe: each submission carries an idempotency key of the node's own.
    client = await via_proxy(client_only=True, worker_ttl=2.0)
    proxy.lose_reply_to(script_sha("task_submit"), LOST)
    handle = await client.submit(sleep, {"s": 0.01}, key="k")  # not JobExistsError
    queued = await client.submit(sleep, {"s": 0.01}, key="k", if_active="queue")
    assert proxy.lost == LOST
    assert not handle.existing
    worker = await make_node()
    await worker.add_task_worker(tasks)
    assert (await queued.wait(timeout=10)).status is redpool.Status.SUCCEEDED
    assert (await handle.metrics()).runs == 2  # the retries admitted no third generation


async def test_a_retried_cancel_that_worked_answers_as_it_did(
    make_node: MakeNode, via_proxy, proxy: Proxy
) -> None:
    client = await via_proxy(client_only=True, worker_ttl=2.0)
    await client.submit(sleep, {"s": 0.01}, key="k")
    later = await client.submit(sleep, {"s": 0.01}, key="k", if_active="queue")
    proxy.lose_reply_to(script_sha("task_cancel"), LOST)
    # Was a cancel of the next generation too: the retries found it the key's current one.
    assert await client.job("k").cancel() is redpool.Status.CANCELED
    assert proxy.lost == LOST
    assert await later.status() is redpool.Status.QUEUED
    worker = await make_node()
    await worker.add_task_worker(tasks)
    assert (await later.wait(timeout=10)).status is redpool.Status.SUCCEEDED


async def test_a_retried_cancel_of_a_running_job_returns_once_it_ended(
    make_node: MakeNode, via_proxy, proxy: Proxy
) -> None:
    # Already safe: a retry finds the job canceling or canceled.
    worker = await make_node()
    await worker.add_task_worker(tasks)
    client = await via_proxy(client_only=True, worker_ttl=2.0)
    handle = await client.submit(sleep, {"s": 30})
    await eventually(lambda: _is(handle, redpool.Status.RUNNING), what="running")
    proxy.lose_reply_to(script_sha("task_cancel"), LOST)
    assert await handle.cancel(timeout=10) is redpool.Status.CANCELED
    assert proxy.lost == LOST


async def test_a_retried_resume_that_worked_answers_as_it_did(
    make_node: MakeNode, via_proxy, proxy: Proxy
) -> None:
    worker = await make_node()
    await worker.add_task_worker(tasks)
    client = await via_proxy(client_only=True, worker_ttl=2.0)
    handle = await client.submit(add, AddParams(1, 2), delay=30)
    assert await handle.suspend() is redpool.Status.SUSPENDED
    proxy.lose_reply_to(script_sha("task_control"), LOST)
    # Was InvalidTransitionError: the retries found the job placed again and finished.
    assert await handle.resume() in (redpool.Status.QUEUED, redpool.Status.STARTING)
    assert proxy.lost == LOST
    assert (await handle.result(timeout=10)).total == 3


async def test_a_retried_finish_stores_the_result_once(
    make_node: MakeNode, via_proxy, proxy: Proxy
) -> None:
    # Already safe: the report is fenced by (worker, epoch); the retry finds it ended.
    worker = await via_proxy(worker_ttl=2.0)
    await worker.add_task_worker(tasks)
    client = await make_node(client_only=True)
    proxy.lose_reply_to(script_sha("task_finish"), LOST)
    handle = await client.submit(add, AddParams(1, 2))
    result = await handle.result(timeout=10)
    assert isinstance(result, AddResult) and result.total == 3
    await eventually(lambda: _lost(proxy), what="every reply lost")
    after = await client.submit(add, AddParams(2, 2))
    assert (await after.result(timeout=10)).total == 4  # the worker serves on
    metrics = await handle.metrics()
    assert (metrics.runs, metrics.succeeded, metrics.failed) == (1, 1, 0)
    assert len(await handle.runs()) == 1


async def _is(handle: redpool.JobHandle[str], status: redpool.Status) -> bool:
    return await handle.status() is status


async def _lost(proxy: Proxy) -> bool:
    return proxy.lost == LOST

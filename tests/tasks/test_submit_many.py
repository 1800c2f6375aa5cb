"""submit_many: every job with its own options (redpool.Submission), all or none per call."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import redpool
from redpool import Submission
from tests.tasks.conftest import TaskWorkerProc, read_events
from tests.tasks.sample_tasks import AddParams, add, echo, sleep

Workers = Callable[..., Awaitable[TaskWorkerProc]]
MakeNode = Callable[..., Awaitable[redpool.Node]]


async def test_each_job_of_a_batch_keeps_its_own_options(
    make_node: MakeNode, task_workers: Workers, task_events: Path
) -> None:
    node = await make_node(client_only=True)
    handles = await node.submit_many(
        [
            Submission(echo, "first", key="k", tenant="acme", labels={"team": "a"}),
            Submission(echo, "second", key="k", if_active="queue"),  # after the first
            Submission(echo, "top", key="top", priority=9),
            Submission(echo, "later", key="later", delay=60),
            Submission(sleep, {"s": 0.01}, key="elsewhere", queue="other"),
            Submission(add, AddParams(1, 2), idempotency_key="pay-1"),
            Submission(add, AddParams(1, 2), idempotency_key="pay-1"),  # a replay
            Submission(echo, "doomed", key="doomed", timeout=0.05, retry=redpool.Retry(3)),
            ("echo", "by name"),
        ]
    )
    k1, k2, top, later, elsewhere, pay, replay, doomed, by_name = handles
    assert (k1.key, k2.key) == ("k", "k") and k2.generation > k1.generation  # type: ignore[operator]
    info = await k1.info()
    assert (info.tenant, info.labels) == ("acme", {"team": "a"})
    assert await later.status() is redpool.Status.SCHEDULED
    assert (await elsewhere.info()).queue == "other"
    assert replay.key == pay.key and replay.existing and not pay.existing
    await task_workers(1)  # one slot: the queue's order decides
    for handle in (k1, k2, top, pay, by_name):
        assert (await handle.wait(timeout=10)).status is redpool.Status.SUCCEEDED
    with pytest.raises(redpool.JobTimedOutError):
        await doomed.result(timeout=10)
    assert (await doomed.info()).attempt == 3  # its own retry policy, stored with it
    starts = [e[3] for e in read_events(task_events) if e[2] == "start"]
    assert starts[0] == "top"
    assert starts.index("k") < len(starts) - 1 - starts[::-1].index("k")  # twice, in order
    assert [r.outcome for r in await k2.runs()][:2] == ["succeeded", "succeeded"]
    assert await k2.result() == "second"  # the first one's result gave way to it
    assert await elsewhere.status() is redpool.Status.QUEUED  # nobody serves "other"


async def test_a_bad_item_rejects_the_whole_batch_before_anything_is_sent(
    make_node: MakeNode,
) -> None:
    node = await make_node(client_only=True)
    cases = [
        (Submission(add, {1, 2}), r"item 1: params .*type set"),
        (Submission(add, None, priority=10), r"item 1: priority"),
        (Submission(add, None, key="a"), r"item 1: key 'a' is given twice"),
        (Submission(add, AddParams(9, 9), idempotency_key="i"), r"item 1: idempotency key"),
    ]
    for bad, message in cases:
        first = Submission(add, AddParams(1, 1), key="a", idempotency_key="i")
        with pytest.raises(redpool.InvalidArgumentError, match=message):
            await node.submit_many([first, bad])
    assert (await node.jobs.list()).items == []


async def test_a_refusal_at_admission_admits_none_of_the_batch(make_node: MakeNode) -> None:
    node = await make_node(client_only=True)
    active = await node.submit(sleep, {"s": 0.01}, key="taken")
    await node.submit(add, AddParams(1, 1), idempotency_key="once")
    with pytest.raises(redpool.JobExistsError) as exists:
        await node.submit_many(
            [Submission(add, AddParams(1, 1), key="new"), Submission(sleep, None, key="taken")]
        )
    assert exists.value.handle == active
    with pytest.raises(redpool.IdempotencyConflictError):
        await node.submit_many(
            [
                Submission(add, AddParams(2, 2), key="new"),
                Submission(add, None, idempotency_key="once"),
            ]
        )
    keys = {info.key for info in (await node.jobs.list()).items}
    assert "new" not in keys and len(keys) == 2

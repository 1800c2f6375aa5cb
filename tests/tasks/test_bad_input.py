"""Bad input gets a typed error at the call: params that cannot be encoded or are too large
(InvalidArgumentError at submit), a result over the task's max_result_size (the run fails)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

import redpool
from tests.tasks.conftest import TaskWorkerProc
from tests.tasks.sample_tasks import add, big

Workers = Callable[..., Awaitable[TaskWorkerProc]]
MakeNode = Callable[..., Awaitable[redpool.Node]]


async def test_unencodable_params_raise_at_submit_naming_their_type(make_node: MakeNode) -> None:
    node = await make_node()
    with pytest.raises(
        redpool.InvalidArgumentError, match=r"params .*cannot encode a value of type object"
    ):
        await node.submit(add, object())  # type: ignore[arg-type]
    with pytest.raises(redpool.InvalidArgumentError, match=r"type set .*sorted list"):
        await node.submit("add", {"ids": {3, 1, 2}})
    assert (await node.jobs.list()).items == []


async def test_params_over_max_payload_size_raise_at_submit(make_node: MakeNode) -> None:
    node = await make_node(max_payload_size=1000)
    with pytest.raises(redpool.InvalidArgumentError, match="over max_payload_size=1000"):
        await node.submit("big", "x" * 1000)
    small = await node.submit("big", "x" * 900)
    assert await small.status() is redpool.Status.QUEUED


async def test_a_result_over_max_result_size_fails_the_run_with_a_clear_error(
    make_node: MakeNode, task_workers: Workers
) -> None:
    await task_workers()
    node = await make_node(client_only=True)
    with pytest.raises(redpool.JobFailedError) as caught:
        await node.run(big, 2000, timeout=10)  # the task allows 1000 bytes
    error = caught.value.info.error
    assert error is not None and error.type == "InvalidArgumentError"
    assert "2003 bytes encoded, over its max_result_size=1000" in error.message
    assert caught.value.info.attempt == 1  # not retried: no run fixes it
    assert await node.run(big, 10, timeout=10) == "x" * 10


def test_max_result_size_and_max_interrupts_are_checked_where_they_are_set() -> None:
    with pytest.raises(redpool.InvalidArgumentError, match="max_result_size"):
        redpool.Tasks(max_result_size=0)
    with pytest.raises(redpool.InvalidArgumentError, match="max_result_size"):
        redpool.Tasks().task(max_result_size=65 * 1024 * 1024)
    with pytest.raises(redpool.InvalidArgumentError, match="max_interrupts"):
        redpool.Tasks(max_interrupts=-1)

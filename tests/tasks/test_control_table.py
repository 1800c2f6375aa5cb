"""The status x action table of README "Pause, resume, suspend", cell by cell, against a
model of it: a job is brought into each status by one client node, the action is taken by
another, and the answer (status or error, with the true status) and the status seen after it
must be the model's. The runs are in a worker process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

import redpool
from redpool import Status
from tests.helpers import eventually
from tests.tasks.conftest import TaskWorkerProc, read_events
from tests.tasks.sample_tasks import AddParams, add, counter

Workers = Callable[..., Awaitable[TaskWorkerProc]]
MakeNode = Callable[..., Awaitable[redpool.Node]]
Handle = redpool.JobHandle[object]

# The model: (status, action) -> the answer, and the status right after it (a run on its way
# out may be past its stop already). An answer is a Status, or an error class (its .status is
# the job's status before the action).
S = Status
STOPPING = (S.CANCELING, S.CANCELED)
LEAVING = (S.SUSPENDING, S.SUSPENDED)
MODEL: dict[tuple[Status, str], tuple[Status | type[Exception], Status | tuple[Status, ...]]] = {
    (S.SCHEDULED, "pause"): (redpool.InvalidTransitionError, S.SCHEDULED),
    (S.SCHEDULED, "resume"): (S.SCHEDULED, S.SCHEDULED),
    (S.SCHEDULED, "suspend"): (S.SUSPENDED, S.SUSPENDED),
    (S.SCHEDULED, "cancel"): (S.CANCELED, S.CANCELED),
    (S.QUEUED, "pause"): (redpool.InvalidTransitionError, S.QUEUED),
    (S.QUEUED, "resume"): (S.QUEUED, S.QUEUED),
    (S.QUEUED, "suspend"): (S.SUSPENDED, S.SUSPENDED),
    (S.QUEUED, "cancel"): (S.CANCELED, S.CANCELED),
    (S.RUNNING, "pause"): (S.PAUSED, S.PAUSED),
    (S.RUNNING, "resume"): (S.RUNNING, S.RUNNING),
    (S.RUNNING, "suspend"): (S.SUSPENDING, LEAVING),
    (S.RUNNING, "cancel"): (S.CANCELING, STOPPING),
    (S.PAUSING, "pause"): (redpool.PauseTimeoutError, S.RUNNING),  # no checkpoint comes
    (S.PAUSING, "resume"): (S.RUNNING, S.RUNNING),  # the pause is withdrawn
    (S.PAUSING, "suspend"): (S.SUSPENDING, S.SUSPENDING),
    (S.PAUSING, "cancel"): (S.CANCELING, STOPPING),
    (S.PAUSED, "pause"): (S.PAUSED, S.PAUSED),
    (S.PAUSED, "resume"): (S.RUNNING, S.RUNNING),
    (S.PAUSED, "suspend"): (S.SUSPENDING, LEAVING),
    (S.PAUSED, "cancel"): (S.CANCELING, STOPPING),
    (S.SUSPENDING, "pause"): (redpool.InvalidTransitionError, S.SUSPENDING),
    (S.SUSPENDING, "resume"): (S.SUSPENDING, S.SUSPENDING),  # placed again once suspended
    (S.SUSPENDING, "suspend"): (S.SUSPENDING, S.SUSPENDING),
    (S.SUSPENDING, "cancel"): (S.CANCELING, STOPPING),
    (S.SUSPENDED, "pause"): (redpool.InvalidTransitionError, S.SUSPENDED),
    (S.SUSPENDED, "resume"): (S.QUEUED, S.QUEUED),  # its queue has no worker
    (S.SUSPENDED, "suspend"): (S.SUSPENDED, S.SUSPENDED),
    (S.SUSPENDED, "cancel"): (S.CANCELED, S.CANCELED),
    (S.SUCCEEDED, "pause"): (redpool.InvalidTransitionError, S.SUCCEEDED),
    (S.SUCCEEDED, "resume"): (redpool.InvalidTransitionError, S.SUCCEEDED),
    (S.SUCCEEDED, "suspend"): (redpool.InvalidTransitionError, S.SUCCEEDED),
    (S.SUCCEEDED, "cancel"): (S.SUCCEEDED, S.SUCCEEDED),
}


async def _is(handle: Handle, status: Status) -> bool:
    return await handle.status() is status


async def _into(
    node: redpool.Node,
    status: Status,
    key: str,
    waits: list[asyncio.Task[Status]],
    events: Path,
) -> Handle:
    """A fresh job in ``status``. Runs that must not reach a checkpoint soon (pausing,
    suspending) count with a 60 s step: their first checkpoint comes right at the start."""
    slow = {"to": 10**6, "step": 60.0}
    if status is S.SCHEDULED:
        return await node.submit(counter, {"to": 1}, key=key, delay=60)
    if status in (S.QUEUED, S.SUSPENDED):
        handle = await node.submit(counter, {"to": 1}, key=key, queue="nobody")
        if status is S.SUSPENDED:
            await handle.suspend()
        return handle
    if status is S.SUCCEEDED:
        handle = await node.submit(add, AddParams(1, 1), key=key)
        await handle.wait(timeout=10)
        return handle
    params = {"to": 10**6} if status in (S.RUNNING, S.PAUSED) else slow
    handle = await node.submit(counter, params, key=key)
    await eventually(lambda: _passed(events, key), what=f"{key} past its first checkpoint")
    if status is S.PAUSED:
        await handle.pause()
    elif status is S.SUSPENDING:
        await handle.suspend(wait=False)
    elif status is S.PAUSING:  # a pause that waits for its acknowledgement meanwhile
        waits.append(asyncio.create_task(handle.pause(ack_timeout=60)))
        await eventually(lambda: _is(handle, S.PAUSING), what=f"{key} pausing")
    return handle


def _passed(events: Path, key: str) -> bool:
    return any(e[3] == key and e[2].startswith("passed:") for e in read_events(events))


async def _act(handle: Handle, action: str) -> Status:
    if action == "pause":
        return await handle.pause(ack_timeout=0.3)
    if action == "resume":
        return await handle.resume()
    if action == "suspend":
        return await handle.suspend(wait=False)
    return await handle.cancel(wait=False)


@pytest.mark.parametrize("status", sorted({s for s, _ in MODEL}, key=list(Status).index))
async def test_every_action_in_this_status_does_what_the_table_says(
    make_node: MakeNode, task_workers: Workers, task_events: Path, status: Status
) -> None:
    await task_workers(20)
    setter, actor = await make_node(client_only=True), await make_node(client_only=True)
    waits: list[asyncio.Task[Status]] = []
    try:
        for action in ("pause", "resume", "suspend", "cancel"):
            key = f"{status.value}-{action}"
            await _into(setter, status, key, waits, task_events)
            handle = actor.job(key)
            want, after = MODEL[status, action]
            if isinstance(want, type):
                with pytest.raises(want) as caught:
                    await _act(handle, action)
                if isinstance(caught.value, redpool.InvalidTransitionError):
                    assert caught.value.status == status.value, key
            else:
                assert await _act(handle, action) is want, key
            assert await setter.job(key).status() in (
                after if isinstance(after, tuple) else (after,)
            ), key
    finally:
        for task in waits:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

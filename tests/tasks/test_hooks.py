"""Run hooks on the worker, the registry and the task (Orbit's OnStart … Finally)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import redpool
from redpool import RunContext

MakeNode = Callable[..., Awaitable[redpool.Node]]


class Calls:
    def __init__(self, name: str, log: list[str], refuse: str = "") -> None:
        self.name, self.log, self.refuse = name, log, refuse

    async def on_start(self, run: RunContext) -> None:
        self.log.append(f"{self.name}:start:{run.key}")
        if run.key == self.refuse:
            raise PermissionError("not today")

    def on_success(self, run: RunContext, result: Any) -> None:  # sync: runs in a thread
        self.log.append(f"{self.name}:success:{run.key}:{result}")

    async def on_failure(self, run: RunContext, error: BaseException) -> None:
        self.log.append(f"{self.name}:failure:{run.key}:{type(error).__name__}")

    async def on_cancel(self, run: RunContext, reason: str) -> None:
        self.log.append(f"{self.name}:cancel:{run.key}:{reason}")

    async def on_finally(self, run: RunContext, outcome: str) -> None:
        self.log.append(f"{self.name}:finally:{run.key}:{outcome}")


async def test_hooks_run_worker_then_registry_then_task_and_on_start_can_refuse(
    make_node: MakeNode,
) -> None:
    log: list[str] = []
    tasks = redpool.Tasks(hooks=[Calls("registry", log)])

    @tasks.task(name="hooked.ok", hooks=[Calls("task", log)])
    async def ok(run: RunContext, params: int) -> int:
        return params + 1

    @tasks.task(name="hooked.bad")
    async def bad(run: RunContext, params: None) -> None:
        raise KeyError("x")

    node = await make_node()
    await node.add_task_worker(tasks, hooks=[Calls("worker", log, refuse="refused")])
    assert await node.run(ok, 1, timeout=10) == 2
    assert [c.split(":")[0] + ":" + c.split(":")[1] for c in log] == [
        "worker:start",
        "registry:start",
        "task:start",
        "worker:success",
        "registry:success",
        "task:success",
        "worker:finally",
        "registry:finally",
        "task:finally",
    ]
    log.clear()
    with pytest.raises(redpool.JobFailedError):
        await (await node.submit(bad, None, key="bad")).result(timeout=10)
    assert "worker:failure:bad:KeyError" in log and "registry:finally:bad:failed" in log
    log.clear()
    with pytest.raises(redpool.JobFailedError) as caught:
        await (await node.submit(ok, 1, key="refused")).result(timeout=10)
    assert caught.value.info.error is not None
    assert caught.value.info.error.type == "PermissionError"
    assert log[0] == "worker:start:refused" and "task:start:refused" not in log


async def test_a_hook_object_without_hook_methods_is_refused() -> None:
    with pytest.raises(redpool.InvalidArgumentError, match="hook methods"):
        redpool.Tasks(hooks=[object()])

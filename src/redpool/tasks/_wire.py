"""What crosses between a task worker and its child processes (``isolation="process"``):
frames of msgpack (never pickle), how a child finds its task by module and name, what it
is told of the run, and what its outcome means to the worker."""

from __future__ import annotations

import contextlib
import importlib
import struct
from typing import Any

import msgpack

from .._options import MAX_PAYLOAD_LIMIT
from ..errors import Fail, InvalidArgumentError, RetryLater, Skip, TaskProcessError
from ._codec import decode, encode
from ._context import RunContext
from ._recurring import NextRunIn
from ._registry import Task, Tasks

HEADER = struct.Struct("!I")
DEADLINE = struct.Struct("!d")  # a datagram: monotonic time until which the run may go on
MAX_FRAME = MAX_PAYLOAD_LIMIT + 64 * 1024  # a result at the largest max_result_size, framed


def pack(msg: list[Any]) -> bytes:
    """One frame: its length, then msgpack (log fields that are not msgpack values: repr)."""
    body = msgpack.packb(msg, use_bin_type=True, default=repr)
    return HEADER.pack(len(body)) + body


def unpack(body: bytes) -> list[Any]:
    msg = msgpack.unpackb(body, raw=False)
    if not isinstance(msg, list) or not msg:
        raise ValueError(f"not a message: {msg!r}")
    return msg


def resolve(module: str, qualname: str) -> Task[Any, Any]:
    """The task bound to ``module``.``qualname``: how a child finds what to run."""
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    if not isinstance(found, Task):
        raise TypeError(f"{module}.{qualname} is {found!r}, not a task")
    return found


def check_importable(tasks: Tasks) -> None:
    """InvalidArgumentError naming the first task a child process could not import."""
    for name in tasks.names():
        where(tasks.get(name))


def where(task: Task[Any, Any]) -> tuple[str, str]:
    """The module and qualified name a child imports ``task`` by: its function's, or a
    top-level name of that module bound to it (a function registered twice, under two
    names); InvalidArgumentError for a task in __main__ or in a function, or a lambda."""
    module, qualname = task.fn.__module__, task.fn.__qualname__
    if module == "__main__":
        problem = "it is defined in __main__, which a child process does not import"
    else:
        try:
            names = vars(importlib.import_module(module))
        except Exception as exc:
            problem = f"{module} cannot be imported: {exc}"
        else:
            with contextlib.suppress(Exception):
                if "<" not in qualname and resolve(module, qualname) is task:
                    return module, qualname
            for name, value in names.items():
                if value is task:
                    return module, name
            problem = (
                f"{qualname} is defined inside a function or is a lambda"
                if "<" in qualname
                else f"it is bound to no name at the top level of {module}"
            )
    raise InvalidArgumentError(
        f"task {task.name!r} cannot run with isolation='process': {problem}; define it with "
        "@tasks.task at the top level of an importable module"
    )


def run_fields(ctx: RunContext) -> dict[str, Any]:
    last = ctx.last_progress
    return {
        "key": ctx.key,
        "generation": ctx.generation,
        "attempt": ctx.attempt,
        "epoch": ctx.epoch,
        "tenant": ctx.tenant,
        "labels": dict(ctx.labels),
        "worker_id": ctx.worker_id,
        "interrupts": ctx.interrupts,
        "resumed": ctx.resumed,
        "checkpoint_state": encode(ctx.checkpoint_state, "checkpoint state"),
        "last_progress": None
        if last is None
        else [last.completed, last.total, last.details, last.updated_at.timestamp()],
    }


def outcome(reply: list[Any]) -> Any:
    """A child's outcome as the worker's own run would have had it: a value or a raise."""
    kind = reply[0]
    if kind == "ok":
        return decode(reply[1])
    if kind == "skip":
        raise Skip(reply[1])
    if kind == "fail":
        raise Fail(reply[1])
    if kind == "later":
        raise RetryLater(reply[1])
    if kind == "next":
        return NextRunIn(reply[1])
    error, retryable = reply[1], reply[2]
    raise TaskProcessError(error["message"], error["type"], error["tb"], bool(retryable))

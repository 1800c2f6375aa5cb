"""Task definitions: the ``Tasks`` registry, its ``Task`` objects and their options, and the
``Retry`` policy (tenacity's own wait strategies and retry predicates)."""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, overload

import tenacity

from .._options import MAX_PAYLOAD_LIMIT, MIB
from ..errors import InvalidArgumentError, UnknownTaskError
from ._hooks import check_hooks

if TYPE_CHECKING:
    from ._context import RunContext, SyncRunContext

P = TypeVar("P")
R = TypeVar("R")

# Wait strategies a submit may carry: stored by class name and numeric fields, since the
# worker that runs the job may not share the submitter's objects (no pickle).
_WAITS = frozenset(
    {
        "wait_none",
        "wait_fixed",
        "wait_exponential",
        "wait_exponential_jitter",
        "wait_random",
        "wait_random_exponential",
    }
)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()

MAX_INTERRUPTS = 3  # runs of a job lost with their worker before it fails (a default)


def seconds(value: float | timedelta | None, name: str, *, zero: bool = False) -> float | None:
    """Seconds from ``value`` (None stays None); InvalidArgumentError unless > 0 (>= 0 with
    ``zero``: a keep time of 0 purges a finished job at once)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (value >= 0 if zero else value > 0)
        or not math.isfinite(value)
    ):
        bound = ">= 0" if zero else "> 0"
        raise InvalidArgumentError(
            f"{name} must be seconds {bound}, a timedelta or None: {value!r}"
        )
    return float(value)


def check_max_interrupts(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(f"max_interrupts must be an int >= 0, got {value!r}")
    return value


def check_max_result_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAYLOAD_LIMIT:
        raise InvalidArgumentError(
            f"max_result_size must be an int of bytes 1..{MAX_PAYLOAD_LIMIT} (64 MiB), got "
            f"{value!r}; store large results elsewhere and return a reference"
        )
    return value


@dataclass(frozen=True)
class Retry:
    """How often and when a failed task runs again. ``max_attempts`` counts runs in all
    (1: no retry; None: until success); ``wait`` is a tenacity wait strategy (the delay
    before each retry, due on the Redis clock); ``retry`` a tenacity retry predicate that
    filters exceptions (only in a task's definition: it is code, and is not stored)."""

    max_attempts: int | None = 1
    wait: tenacity.wait.wait_base | None = None
    retry: tenacity.retry_base | None = None

    def __post_init__(self) -> None:
        n = self.max_attempts
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise InvalidArgumentError(f"max_attempts must be an int >= 1 or None, got {n!r}")
        if self.wait is not None and type(self.wait).__name__ not in _WAITS:
            raise InvalidArgumentError(
                f"Retry wait must be one of tenacity's {', '.join(sorted(_WAITS))}, "
                f"got {self.wait!r}"
            )

    def wait_spec(self) -> dict[str, Any]:
        """The wait strategy as stored in the job record."""
        if self.wait is None:
            return {}
        fields = {k: v for k, v in vars(self.wait).items() if isinstance(v, (int, float))}
        return {"k": type(self.wait).__name__, "a": fields}


def retries(policy: Retry, attempt: int, exc: BaseException) -> bool:
    """Whether ``policy``'s retry predicate lets run ``attempt`` (1-based), which raised
    ``exc``, run again (whether attempts are left is the finishing script's call)."""
    if policy.retry is None:
        return True
    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, exc.__traceback__))
    return bool(policy.retry(state))


def wait_seconds(spec: dict[str, Any], attempt: int) -> float:
    """The delay before the run after ``attempt`` (1-based), from a stored wait spec."""
    name = spec.get("k") if isinstance(spec, dict) else None
    if name not in _WAITS:
        return 0.0
    strategy = object.__new__(getattr(tenacity, str(name)))
    vars(strategy).update(spec.get("a") or {})
    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = attempt
    return max(0.0, float(strategy(state)))


@dataclass(frozen=True)
class Task(Generic[P, R]):
    """A registered task: call it with ``node.submit(task, params)``."""

    name: str
    fn: Callable[..., Any]
    queue: str
    timeout: float | None
    retry: Retry
    description: str
    params_type: Any
    result_type: Any
    hooks: tuple[object, ...] = ()
    stall_timeout: float | None = None
    suspendable: bool = False
    on_suspend: Callable[..., Any] | None = None  # on_suspend(run), sync or async
    # Boundary's NextRunIn() of a schedule's task: (run, outcome) -> seconds | None (grid)
    next_run_in: Callable[..., Any] | None = None
    max_interrupts: int = MAX_INTERRUPTS
    max_result_size: int = MIB
    keep: float | None = None  # None: the registry's, else the submitting node's default
    keep_failed: float | None = None

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)


class TaskDecorator(Protocol):
    @overload
    def __call__(self, fn: Callable[[RunContext, P], Awaitable[R]]) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[[SyncRunContext, P], R]) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[[RunContext, P], R]) -> Task[P, R]: ...


def _types(fn: Callable[..., Any]) -> tuple[Any, Any]:
    """The params and result types from ``fn``'s annotations (None where absent)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # unresolvable forward references: decode to plain values
        return None, None
    names = list(inspect.signature(fn).parameters)
    params = hints.get(names[1]) if len(names) > 1 else None
    return params, hints.get("return")


class Tasks:
    """A registry of tasks: a plain object (no globals) that workers serve and clients
    submit from. Its defaults apply to tasks that set no value of their own.
    ``max_interrupts``: runs of a job that may be lost with their worker (killed, fenced)
    before the job fails; ``max_result_size``: the largest encoded result in bytes (a larger
    one fails the run)."""

    def __init__(
        self,
        default_queue: str = "default",
        *,
        timeout: float | timedelta | None = None,
        retry: Retry | None = None,
        hooks: Sequence[object] | None = None,
        stall_timeout: float | timedelta | None = None,
        max_interrupts: int = MAX_INTERRUPTS,
        max_result_size: int = MIB,
        keep: float | timedelta | None = None,
        keep_failed: float | timedelta | None = None,
    ) -> None:
        self.default_queue = default_queue
        self.hooks = check_hooks(hooks)
        self.timeout = seconds(timeout, "timeout")
        self.stall_timeout = seconds(stall_timeout, "stall_timeout")
        self.retry = retry or Retry()
        self.max_interrupts = check_max_interrupts(max_interrupts)
        self.max_result_size = check_max_result_size(max_result_size)
        self.keep = seconds(keep, "keep", zero=True)
        self.keep_failed = seconds(keep_failed, "keep_failed", zero=True)
        self._tasks: dict[str, Task[Any, Any]] = {}

    def task(
        self,
        *,
        name: str | None = None,
        queue: str | None = None,
        timeout: float | timedelta | None = UNSET,
        retry: Retry | None = UNSET,
        description: str | None = None,
        hooks: Sequence[object] | None = None,
        stall_timeout: float | timedelta | None = UNSET,
        suspendable: bool = False,
        on_suspend: Callable[..., Any] | None = None,
        next_run_in: Callable[..., Any] | None = None,
        max_interrupts: int = UNSET,
        max_result_size: int = UNSET,
        keep: float | timedelta | None = None,
        keep_failed: float | timedelta | None = None,
    ) -> TaskDecorator:
        """Register the decorated ``async def fn(run: RunContext, params) -> result`` (or a
        plain ``def``, which runs in a thread and gets a ``SyncRunContext``).
        ``stall_timeout``: a run that calls neither ``progress()`` nor ``checkpoint()`` for
        that long is interrupted by its worker and runs again (max_interrupts).
        ``suspendable``: its runs may be suspended (they stop at a ``run.checkpoint()`` and
        give their slot back); ``on_suspend(run)`` is called on the worker once one did.
        ``next_run_in(run, outcome)``: when the task runs on a schedule, the seconds until
        its next run after this one (None: the schedule's grid), as a returned NextRunIn.
        ``keep`` / ``keep_failed``: how long its finished jobs are kept (None: the
        registry's)."""

        if not isinstance(suspendable, bool):
            raise InvalidArgumentError(f"suspendable must be a bool, got {suspendable!r}")
        if on_suspend is not None and not callable(on_suspend):
            raise InvalidArgumentError(f"on_suspend must be callable, got {on_suspend!r}")
        interrupts = (
            self.max_interrupts if max_interrupts is UNSET else check_max_interrupts(max_interrupts)
        )
        result_size = (
            self.max_result_size
            if max_result_size is UNSET
            else check_max_result_size(max_result_size)
        )
        keep_s = seconds(keep, "keep", zero=True)
        keep_failed_s = seconds(keep_failed, "keep_failed", zero=True)

        def register(fn: Callable[..., Any]) -> Task[Any, Any]:
            if not callable(fn) or len(inspect.signature(fn).parameters) < 1:
                raise InvalidArgumentError("a task takes (run: RunContext, params)")
            task_name = name or f"{fn.__module__}.{fn.__qualname__}"
            if task_name in self._tasks:
                raise InvalidArgumentError(f"a task named {task_name!r} is registered already")
            params_type, result_type = _types(fn)
            task: Task[Any, Any] = Task(
                name=task_name,
                fn=fn,
                queue=queue or self.default_queue,
                timeout=self.timeout if timeout is UNSET else seconds(timeout, "timeout"),
                retry=self.retry if retry is UNSET or retry is None else retry,
                description=description or inspect.getdoc(fn) or "",
                params_type=params_type,
                result_type=result_type,
                hooks=check_hooks(hooks),
                stall_timeout=self.stall_timeout
                if stall_timeout is UNSET
                else seconds(stall_timeout, "stall_timeout"),
                suspendable=suspendable,
                on_suspend=on_suspend,
                next_run_in=next_run_in,
                max_interrupts=interrupts,
                max_result_size=result_size,
                keep=self.keep if keep_s is None else keep_s,
                keep_failed=self.keep_failed if keep_failed_s is None else keep_failed_s,
            )
            self._tasks[task_name] = task
            return task

        return typing.cast(TaskDecorator, register)

    def get(self, name: str) -> Task[Any, Any]:
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownTaskError(name) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def suspendable(self) -> list[str]:
        """Names of the tasks declared ``suspendable=True``."""
        return sorted(name for name, task in self._tasks.items() if task.suspendable)

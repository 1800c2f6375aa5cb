"""Run hooks (Orbit's OnStart … Finally): objects with any of ``on_start(run)``,
``on_success(run, result)``, ``on_failure(run, error)``, ``on_cancel(run, reason)`` and
``on_finally(run, outcome)``, each sync (run in a thread) or async. They run on the worker,
in the order worker → registry → task. ``on_start`` raising fails the run; the others'
exceptions are logged."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from structlog.typing import FilteringBoundLogger

from .._threads import call_maybe_async
from ..errors import InvalidArgumentError

NAMES = ("on_start", "on_success", "on_failure", "on_cancel", "on_finally")


def check_hooks(hooks: Sequence[object] | None) -> tuple[object, ...]:
    """The hooks, each checked to have at least one hook method."""
    if hooks is None:
        return ()
    if isinstance(hooks, (str, bytes)) or not isinstance(hooks, Sequence):
        raise InvalidArgumentError(f"hooks must be a list of hook objects, got {hooks!r}")
    for hook in hooks:
        if not any(callable(getattr(hook, name, None)) for name in NAMES):
            raise InvalidArgumentError(f"{hook!r} has none of the hook methods {', '.join(NAMES)}")
    return tuple(hooks)


async def start(hooks: Sequence[object], run: Any) -> None:
    """``on_start`` of each hook; an exception propagates (it fails the run)."""
    for hook in hooks:
        method = getattr(hook, "on_start", None)
        if callable(method):
            await call_maybe_async(method, run)


async def ended(
    hooks: Sequence[object],
    run: Any,
    outcome: str,
    result: Any,
    error: BaseException | None,
    log: FilteringBoundLogger,
) -> None:
    """The hooks for how a run ended, then ``on_finally``; exceptions are logged."""
    calls: list[tuple[str, tuple[Any, ...]]] = []
    if outcome == "succeeded":
        calls.append(("on_success", (run, result)))
    elif outcome in ("failed", "timed_out") and error is not None:
        calls.append(("on_failure", (run, error)))
    if outcome in ("canceled", "timed_out"):
        calls.append(("on_cancel", (run, outcome)))
    calls.append(("on_finally", (run, outcome)))
    for name, args in calls:
        for hook in hooks:
            method = getattr(hook, name, None)
            if not callable(method):
                continue
            try:
                await call_maybe_async(method, *args)
            except Exception as exc:
                log.error("run hook failed", hook=name, key=run.key, error=repr(exc))

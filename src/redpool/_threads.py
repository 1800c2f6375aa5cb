"""The threads that run sync user callbacks (handler methods, plan(), on_state_lost), so no
user code can stall the event loop that renews the node's lease."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import itertools
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

THREAD_IDLE = 5.0
"""Seconds an idle thread of ``Threads`` waits for a call before it ends."""


class Threads:
    """Up to ``size`` daemon threads for sync callbacks, started on demand; one idle for
    THREAD_IDLE seconds ends, so nothing needs closing. Daemon threads, unlike a
    ThreadPoolExecutor's (joined at exit), because a handler that never returns must not keep
    the process from exiting; such a thread is abandoned, not waited for."""

    _ids = itertools.count(1)

    def __init__(self, name: str, size: int) -> None:
        self._name = name
        self._size = size
        self._calls: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._queued = 0

    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            self._calls.put(_Call(future, fn, args))
            self._queued += 1
            # A thread more while calls wait for one (an idle thread may be taking one now).
            if self._queued > self._idle and self._threads < self._size:
                self._threads += 1
                name = f"redpool-{self._name}-{next(self._ids)}"
                threading.Thread(target=self._serve, name=name, daemon=True).start()
        return future

    def _serve(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            try:
                call = self._calls.get(timeout=THREAD_IDLE)
            except queue.Empty:
                with self._lock:
                    self._idle -= 1
                    if self._queued <= self._idle:  # no call is left without a thread
                        self._threads -= 1
                        return
                continue
            with self._lock:
                self._idle -= 1
                self._queued -= 1
            if not call.future.set_running_or_notify_cancel():
                continue
            try:
                call.future.set_result(call.fn(*call.args))
            except BaseException as exc:  # handed to the awaiting task
                call.future.set_exception(exc)


@dataclass(frozen=True, slots=True)
class _Call:
    future: concurrent.futures.Future[Any]
    fn: Callable[..., Any]
    args: tuple[Any, ...]


async def call_maybe_async(
    fn: Callable[..., Any],
    *args: Any,
    threads: Threads | None = None,
    before: Callable[[], None] | None = None,
) -> Any:
    """Await an async user callback; run a sync one in ``threads`` (the default executor
    when None) so it cannot stall the event loop (and with it the node's lease renewals).
    ``before`` runs in the thread right before a sync ``fn``: a check that may raise once the
    call has waited for a free thread."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)

    def run() -> Any:
        if before is not None:
            before()
        return fn(*args)

    if threads is None:
        result = await asyncio.to_thread(run)
    else:
        result = await asyncio.wrap_future(threads.submit(run))
    return await result if inspect.isawaitable(result) else result

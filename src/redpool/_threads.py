"""The threads that run sync user callbacks (handler methods, plan(), on_state_lost, sync
tasks), so no user code can stall the event loop that renews the node's lease."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
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


async def call_stoppable(
    fn: Callable[..., Any],
    *args: Any,
    interrupt: type[BaseException],
    wait_when_cancelled: Callable[[], bool],
) -> Any:
    """Run sync ``fn`` in a daemon thread of its own. A cancel of the awaiting task raises
    ``interrupt`` in that thread (CPython's async exception, Dramatiq's method) and, while
    ``wait_when_cancelled()``, goes on waiting until the code has stopped, then re-raises the
    CancelledError. Cooperative: the exception fires at the thread's next bytecode, so a
    blocking C call (time.sleep, a socket read) ends first."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[_Outcome] = loop.create_future()
    thread = _StoppableThread(fn, args, interrupt, loop, done)
    thread.start()
    cancelled = False
    while not done.done():
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            cancelled = True
            thread.interrupt()
            if not wait_when_cancelled():
                raise  # abandoned: a daemon thread does not keep the process alive
    if cancelled:
        raise asyncio.CancelledError
    outcome = done.result()
    if outcome.error is not None:
        raise outcome.error
    return outcome.value


@dataclass(slots=True)
class _Outcome:
    value: Any = None
    error: BaseException | None = None


class _StoppableThread(threading.Thread):
    """One call in a thread that ``interrupt()`` can raise into exactly once, and only while
    the call runs (never into the code that reports its end, nor into a thread that reuses
    the ident after this one ended)."""

    _ids = itertools.count(1)

    def __init__(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        interrupt: type[BaseException],
        loop: asyncio.AbstractEventLoop,
        done: asyncio.Future[_Outcome],
    ) -> None:
        super().__init__(name=f"redpool-task-{next(self._ids)}", daemon=True)
        self._fn = fn
        self._args = args
        self._interrupt = interrupt
        self._loop = loop
        self._done = done
        self._lock = threading.Lock()
        self._state = "new"  # new -> running -> ended
        self._requested = False
        self._sent = False

    def interrupt(self) -> None:
        with self._lock:
            self._requested = True
            if self._state == "running" and not self._sent and self.ident is not None:
                self._sent = True
                _set_async_exc(self.ident, self._interrupt)

    def run(self) -> None:
        outcome = _Outcome()
        try:
            try:
                try:
                    self._arm()
                    outcome.value = self._fn(*self._args)
                except BaseException as exc:
                    outcome.error = exc
            except BaseException as exc:  # the one async exception landed in the handler
                outcome.error = exc
            finally:
                self._disarm()
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                self._loop.call_soon_threadsafe(_settle, self._done, outcome)

    def _arm(self) -> None:
        with self._lock:
            if self._requested:  # stopped before the call began
                raise self._interrupt
            self._state = "running"

    def _disarm(self) -> None:
        with self._lock:
            if self._sent and self.ident is not None:
                _set_async_exc(self.ident, None)  # drop it if it is still pending
            self._state = "ended"


def _set_async_exc(ident: int, exc: type[BaseException] | None) -> None:
    """Raise ``exc`` in thread ``ident`` at its next bytecode (None: clear a pending one)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), None if exc is None else ctypes.py_object(exc)
    )


def _settle(done: asyncio.Future[_Outcome], outcome: _Outcome) -> None:
    if not done.done():
        done.set_result(outcome)

"""Process isolation (``add_task_worker(isolation="process")``): each run executes in a child
process, so a timeout or cancel stops it whatever its code does: SIGTERM, then SIGKILL after
``kill_grace``, and the run ends only once the child is gone. A stopped run's child is
discarded, a finished one's serves the next run. Children come from multiprocessing's
forkserver (a fork of this process would copy its event loop and threads half-way); the
worker itself writes a run's progress and outcome to Redis, fenced like any run."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import math
import multiprocessing
import os
import signal
import socket
import weakref
from collections.abc import Awaitable, Callable
from multiprocessing import forkserver
from typing import Any

import msgpack
from structlog.typing import FilteringBoundLogger

from ..errors import InvalidArgumentError, TaskProcessError
from . import _child
from ._codec import decode
from ._context import RunContext
from ._registry import Task
from ._wire import DEADLINE, HEADER, MAX_FRAME, outcome, pack, run_fields, unpack, where

KILL_GRACE = 5.0
"""Default seconds between the SIGTERM and the SIGKILL of a stopped run's child."""
EXIT_GRACE = 1.0  # a child whose socket closed mid-run gets this long to exit, then SIGKILL
LEASE_PUSH = 0.1  # how often the lease deadline of the runs' children is brought up to date
_LEVELS = {"debug": "debug", "info": "info", "msg": "info", "warning": "warning",
           "warn": "warning", "error": "error", "err": "error", "exception": "error",
           "critical": "critical", "fatal": "critical"}  # fmt: skip

# Children start, and are reaped, in one thread: multiprocessing polls its children's
# sentinels when it starts one, and two threads reading one sentinel lose the exit code.
_STARTER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="redpool-children")
_POOLS: weakref.WeakSet[Children] = weakref.WeakSet()


class Children:
    """The child processes of one task worker: one per run under way, plus the idle ones
    that finished a run normally (so at most ``concurrency`` in all)."""

    def __init__(
        self, kill_grace: float, deadline: Callable[[], float], log: FilteringBoundLogger
    ) -> None:
        self.kill_grace = kill_grace
        self._deadline = deadline  # monotonic time the node's runs must stop by, unless renewed
        self._log = log
        self._pusher: asyncio.Task[None] | None = None
        self._idle: list[_Child] = []
        self._busy: dict[str, _Child] = {}
        self._starting: set[asyncio.Future[_Child]] = set()
        self._closed = False
        _POOLS.add(self)

    async def prepare(self) -> None:
        """Start the forkserver and a first child, so the first run waits for neither."""
        self._idle.append(await self._start())
        self._pusher = asyncio.create_task(self._push_deadlines(), name="redpool-children")

    async def run(
        self, task: Task[Any, Any], ctx: RunContext, params: bytes, stopped: Callable[[], str]
    ) -> Any:
        """Run ``task`` in a child: its result (plain msgpack values), or what it raised. A
        cancel of this call while ``stopped()`` (a stop of the run) ends the child: SIGTERM,
        SIGKILL after kill_grace; CancelledError, saying how, once the child is gone."""
        try:
            module, qualname = where(task)
        except InvalidArgumentError as exc:
            raise TaskProcessError(str(exc), retryable=False) from None
        child = await self._acquire()
        self._busy[ctx.key] = child
        child.push(self._deadline())
        talk = asyncio.ensure_future(
            child.talk(["run", module, qualname, run_fields(ctx), params], ctx)
        )
        try:
            reply = await asyncio.shield(talk)
        except asyncio.CancelledError:
            talk.cancel()
            if not stopped():  # not a stop of ours: the worker itself is torn down
                child.kill("its worker is torn down")
                raise
            raise asyncio.CancelledError(await self._stop(child, ctx.key)) from None
        except _Unowned:  # as an async run's progress(): ends unreported
            child.kill("the run is not this worker's any more")
            await _gone(child)
            raise asyncio.CancelledError("the run is not this worker's any more") from None
        except _Gone as exc:
            raise TaskProcessError(await self._died(child, str(exc))) from None
        finally:
            del self._busy[ctx.key]
        self._release(child)
        return outcome(reply)

    def kill(self, key: str, why: str) -> None:
        """SIGKILL the child of ``key``'s run now (a fence: no time for a grace)."""
        child = self._busy.get(key)
        if child is not None:
            child.kill(why)

    def children(self) -> list[_Child]:
        return [*self._idle, *self._busy.values()]

    async def close(self) -> None:
        """SIGKILL every child (idle, and of any run still going); return once all are gone."""
        self._closed = True
        if self._pusher is not None:
            self._pusher.cancel()
        children = self.children()
        self._idle.clear()
        for child in children:
            child.kill("its worker closed")
        await asyncio.gather(*(_gone(child) for child in children))
        _POOLS.discard(self)

    async def _acquire(self) -> _Child:
        while self._idle:
            child = self._idle.pop()
            if not child.gone:
                return child
        starting = asyncio.ensure_future(self._start())
        self._starting.add(starting)
        starting.add_done_callback(self._starting.discard)
        try:
            return await asyncio.shield(starting)
        except asyncio.CancelledError:  # a stop while it starts: keep it for the next run
            starting.add_done_callback(self._adopt)
            raise
        except Exception as exc:
            raise TaskProcessError(f"could not start a child process: {exc!r}") from exc

    def _adopt(self, starting: asyncio.Future[_Child]) -> None:
        if not starting.cancelled() and starting.exception() is None:
            self._release(starting.result())

    def _release(self, child: _Child) -> None:
        if self._closed:
            child.kill("its worker closed")
        else:
            child.push(math.inf)  # an idle child runs nothing the lease must cover
            self._idle.append(child)

    async def _push_deadlines(self) -> None:
        """Keep the children of the runs under way told of the lease's deadline: a child
        kills itself when it passes, should this process be frozen and unable to fence."""
        while True:
            await asyncio.sleep(LEASE_PUSH)
            deadline = self._deadline()
            for child in self._busy.values():
                child.push(deadline)

    async def _start(self) -> _Child:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        lease, their_lease = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        lease.setblocking(False)
        try:
            process = _context().Process(
                target=_child.serve, args=(theirs, their_lease), name="redpool-task", daemon=False
            )
            await loop.run_in_executor(_STARTER, process.start)
        except BaseException:
            ours.close()
            lease.close()
            raise
        finally:
            theirs.close()  # the child has its copy: the worker's exit or close hangs it up
            their_lease.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        return _Child(process, reader, writer, lease)

    async def _stop(self, child: _Child, key: str) -> str:
        child.signal(signal.SIGTERM)
        timer = asyncio.get_running_loop().call_later(
            self.kill_grace,
            child.kill,
            f"it did not stop on SIGTERM within kill_grace={self.kill_grace:g}s",
        )
        try:
            await _gone(child)
        finally:
            timer.cancel()
        if child.killed:
            self._log.warning(
                "a task's child process was killed", key=key, pid=child.pid, why=child.killed
            )
            return f"its child process was killed (SIGKILL): {child.killed}"
        return "its child process ended on SIGTERM"

    async def _died(self, child: _Child, note: str) -> str:
        timer = asyncio.get_running_loop().call_later(EXIT_GRACE, child.kill, "its socket closed")
        try:
            await _gone(child)
        finally:
            timer.cancel()
        code = child.exitcode
        how = (
            f"killed by signal {signal.Signals(-code).name}"
            if code is not None and code < 0 and -code in signal.valid_signals()
            else f"exited with code {code}"
        )
        return f"the child process (pid {child.pid}) running the task died: {how}{note}"


class _Child:
    """One child process, and the worker's end of its socket."""

    def __init__(
        self,
        process: multiprocessing.process.BaseProcess,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        lease: socket.socket,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        assert process.pid is not None  # started
        self._process = process
        self.pid: int = process.pid
        self._reader = reader
        self._writer = writer
        self._lease = lease
        self._deadline = math.inf
        self.gone = False  # it exited (and was reaped): never signal its pid again
        self.exited = asyncio.Event()  # ... and its exit code is known
        self.exitcode: int | None = None
        self.killed = ""  # why it got a SIGKILL
        self._reaping: asyncio.Future[int | None] | None = None
        self._loop.add_reader(process.sentinel, self._on_exit)

    def signal(self, sig: int) -> None:
        if not self.gone:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def push(self, deadline: float) -> None:
        """Tell the child until when its run may go on (a datagram; the latest counts)."""
        if deadline != self._deadline and not self.gone:
            with contextlib.suppress(OSError):  # gone meanwhile, or a full buffer: next time
                self._lease.send(DEADLINE.pack(deadline))
                self._deadline = deadline

    def kill(self, why: str) -> None:
        if not self.gone and not self.killed:
            self.killed = why
            self.signal(signal.SIGKILL)

    async def talk(self, request: list[Any], ctx: RunContext) -> list[Any]:
        """Send a run, then serve the child's asks until its outcome comes back."""
        self._send(request)
        while True:
            msg = await self._read()
            kind = msg[0]
            if kind == "done":
                return msg[1:]
            if kind == "log":
                event = dict(msg[2])
                getattr(ctx.log, _LEVELS.get(msg[1], "info"))(event.pop("event", ""), **event)
            elif kind == "owned":
                self._send(["ok", ctx.is_owned()])
            elif kind == "progress":
                await self._answer(ctx.progress(msg[1], msg[2], msg[3]))
            elif kind == "checkpoint":  # stores its state; may pause here, or stop the run
                await self._answer(
                    ctx.checkpoint() if msg[1] is None else ctx.checkpoint(decode(msg[1]))
                )

    async def _answer(self, call: Awaitable[None]) -> None:
        """Do a child's progress or checkpoint as the run's own, and answer how it went."""
        try:
            await call
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the run is being stopped: the child hears of it by SIGTERM
            self._send(["error", "RunStoppedError", "the run is not this worker's any more"])
            raise _Unowned from None
        except Exception as exc:
            self._send(["error", type(exc).__name__, str(exc)])
        else:
            self._send(["ok"])

    def _send(self, msg: list[Any]) -> None:
        if self._writer.is_closing():
            raise _Gone("")
        self._writer.write(pack(msg))

    async def _read(self) -> list[Any]:
        try:
            (size,) = HEADER.unpack(await self._reader.readexactly(HEADER.size))
            if size > MAX_FRAME:
                self.kill(f"it sent a frame of {size} bytes")
                raise _Gone(f" (it sent a frame of {size} bytes, over {MAX_FRAME})")
            return unpack(await self._reader.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise _Gone("") from exc
        except (ValueError, msgpack.UnpackException) as exc:
            self.kill("it sent a corrupt frame")
            raise _Gone(f" (it sent a corrupt frame: {exc})") from exc

    def _on_exit(self) -> None:
        self.gone = True
        self._loop.remove_reader(self._process.sentinel)
        self._writer.close()
        self._lease.close()
        self._reaping = self._loop.run_in_executor(_STARTER, _reap, self._process)
        self._reaping.add_done_callback(self._reaped)

    def _reaped(self, reaping: asyncio.Future[int | None]) -> None:
        self.exitcode = None if reaping.exception() else reaping.result()
        self.exited.set()


class _Gone(Exception):
    """The child's socket closed or broke: the child died (or is being killed)."""


class _Unowned(Exception):
    """A progress write found the run is not this worker's any more."""


async def _gone(child: _Child) -> None:
    """Wait until ``child`` has exited, through any cancel (the kill that ends it is due)."""
    while not child.exited.is_set():
        with contextlib.suppress(asyncio.CancelledError):
            await child.exited.wait()


def _reap(process: multiprocessing.process.BaseProcess) -> int | None:
    process.join()
    code = process.exitcode
    process.close()
    return code


def _context() -> multiprocessing.context.ForkServerContext:
    """The forkserver context, its server preloading the child's module (so a child starts
    with redpool imported: a fork, not an interpreter's start-up)."""
    context = multiprocessing.get_context("forkserver")
    preload = getattr(forkserver._forkserver, "_preload_modules", None) or []
    if _child.__name__ not in preload:
        context.set_forkserver_preload([*preload, _child.__name__])
    return context


@atexit.register  # before multiprocessing's own exit hook, which joins its children
def _kill_children() -> None:
    for pool in list(_POOLS):
        for child in pool.children():
            child.kill("the worker process exits")

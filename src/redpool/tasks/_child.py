"""The child process of ``isolation="process"``: runs its worker's runs, one at a time. A run
comes as a msgpack frame over a socket and the child answers in frames too (progress,
ownership, logs, then the outcome): no user value is pickled. A SIGTERM stops the run
(``RunStoppedError`` at the next bytecode, and from ``checkpoint()``/``progress()`` after);
the worker then discards the child. The child kills itself at once when the worker's end of
the socket hangs up (the worker died, kill -9 included), or when the worker's lease deadline,
which the worker keeps sending, passes (the worker is frozen or cut off)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import select
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Mapping, MutableMapping
from datetime import datetime, timezone
from typing import Any, cast

import structlog
from structlog.typing import FilteringBoundLogger

from ..errors import Fail, InvalidArgumentError, PoolError, RetryLater, RunStoppedError, Skip
from ._codec import decode, describe, encode, encode_result
from ._context import _NO_STATE, RunContext, SyncRunContext
from ._recurring import NextRunIn
from ._registry import retries
from ._status import Progress
from ._wire import DEADLINE, HEADER, pack, resolve, unpack

_HANGUP = select.POLLHUP | getattr(select, "POLLRDHUP", 0)
CHECKPOINT_ASK = 0.05  # a checkpoint() without state asks the worker at most this often
_STOPPED = "its worker stopped it: canceled, timed out, suspended or shutting down"
_ERRORS: dict[str, type[PoolError]] = {
    "InvalidArgumentError": InvalidArgumentError,
    "RunStoppedError": RunStoppedError,
}

_stopped = threading.Event()  # set by the SIGTERM of a stop; the child ends after the run


def serve(sock: socket.socket, lease: socket.socket) -> None:
    """A child's life (its multiprocessing target): run what the worker sends on ``sock``
    until the worker closes it, or a stop ends the child; ``lease`` brings deadlines."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C is the worker's: it stops the runs
    watch = threading.Thread(target=_watch, args=(sock, lease), name="redpool-watch", daemon=True)
    watch.start()
    channel = _Channel(sock)
    try:
        while (request := channel.read()) is not None:
            outcome = _run(channel, request)
            if _stopped.is_set():
                return
            channel.send(["done", *outcome])
    except (RunStoppedError, OSError):  # a SIGTERM as the run ended, or the worker is gone
        return


def _watch(sock: socket.socket, lease: socket.socket) -> None:
    """Kill this child once its worker cannot vouch for the run: the worker's end of the
    socket hung up (it died; no PR_SET_PDEATHSIG: a child's parent is the forkserver, which
    its children keep alive), or the lease deadline it sent last passed (it is frozen or cut
    off, so it may not fence in time, and others may start the run)."""
    poller = select.poll()
    poller.register(sock.fileno(), _HANGUP)
    poller.register(lease.fileno(), select.POLLIN)
    deadline = math.inf
    while True:
        left = deadline - time.monotonic()
        events = poller.poll(None if deadline == math.inf else max(0, math.ceil(1000 * left)))
        hung_up = any(fd == sock.fileno() for fd, _ in events)
        if hung_up or (not events and time.monotonic() >= deadline):
            os.kill(os.getpid(), signal.SIGKILL)
        with contextlib.suppress(BlockingIOError):
            while True:  # the latest deadline counts
                data = lease.recv(DEADLINE.size, socket.MSG_DONTWAIT)
                if len(data) == DEADLINE.size:
                    deadline = DEADLINE.unpack(data)[0]


def _on_term(signum: int, frame: object) -> None:
    _stopped.set()
    raise RunStoppedError(_STOPPED)


def _run(channel: _Channel, request: list[Any]) -> list[Any]:
    """One run: ["ok", result] | ["raised", error, retryable] | ["skip", reason] |
    ["fail", message] | ["later", delay] | ["next", seconds] (a schedule's NextRunIn)."""
    _, module, qualname, fields, params = request
    try:
        task = resolve(module, qualname)
        value = decode(params, task.params_type)
    except Exception as exc:  # not retryable: no run fixes it
        return ["raised", describe(exc), False]
    run = ChildSyncRunContext(fields, channel)
    signal.signal(signal.SIGTERM, _on_term)
    try:
        if task.is_async:
            result = asyncio.run(task.fn(ChildRunContext(run), value))
        else:
            result = task.fn(run, value)
    except Skip as exc:
        return ["skip", exc.reason]
    except Fail as exc:
        return ["fail", exc.message]
    except RetryLater as exc:
        return ["later", exc.delay]
    except Exception as exc:
        return ["raised", describe(exc), retries(task.retry, fields["attempt"], exc)]
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        run.ended = True  # a context kept past its run must not ask in the next one
    if isinstance(result, NextRunIn):
        return ["next", result.delay]
    try:
        return ["ok", encode_result(result, task.name, task.max_result_size)]
    except Exception as exc:
        return ["raised", describe(exc), False]


class _Channel:
    """The child's end of the socket: whole frames, one ask at a time (progress and
    ownership may be asked from the run's threads)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._lock = threading.Lock()

    def send(self, msg: list[Any]) -> None:
        with self._lock:
            self._sock.sendall(pack(msg))

    def ask(self, msg: list[Any]) -> list[Any]:
        with self._lock:
            self._sock.sendall(pack(msg))
            reply = self.read()
        if reply is None:
            raise RunStoppedError("its worker is gone")
        return reply

    def read(self) -> list[Any] | None:
        header = self._exactly(HEADER.size)
        body = None if header is None else self._exactly(HEADER.unpack(header)[0])
        return None if body is None else unpack(body)

    def _exactly(self, size: int) -> bytes | None:
        data = bytearray()
        while len(data) < size:
            chunk = self._sock.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return bytes(data)


def _fill(ctx: RunContext, fields: Mapping[str, Any], channel: _Channel) -> None:
    ctx.key = fields["key"]
    ctx.generation = fields["generation"]
    ctx.attempt = fields["attempt"]
    ctx.epoch = fields["epoch"]
    ctx.tenant = fields["tenant"]
    ctx.labels = dict(fields["labels"])
    ctx.worker_id = fields["worker_id"]
    ctx.interrupts = fields["interrupts"]
    ctx.resumed = fields["resumed"]
    ctx.checkpoint_state = decode(fields["checkpoint_state"])
    last = fields["last_progress"]
    ctx.last_progress = None if last is None else Progress(last[0], last[1], last[2], _utc(last[3]))
    ctx.log = _logger(channel).bind(key=ctx.key, attempt=ctx.attempt, epoch=ctx.epoch)
    ctx.moved_at = time.monotonic()
    ctx.ended = False
    ctx._holds = None


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, timezone.utc)


class ChildSyncRunContext(SyncRunContext):
    """What a plain ``def`` task gets in a child process: as in a thread. Its progress,
    checkpoints (state, pause, suspend) and ownership are asked of the worker, which does
    them as for a run of its own (writes fenced)."""

    def __init__(self, fields: Mapping[str, Any], channel: _Channel) -> None:
        _fill(self, fields, channel)
        self._channel = channel
        self._asked_at = 0.0

    def is_owned(self) -> bool:
        return not _stopped.is_set() and self._channel.ask(["owned"])[1] is True

    def checkpoint(self, state: Any = _NO_STATE) -> None:  # type: ignore[override]
        """A point where the run stops if it was stopped, and waits while paused."""
        self._check()
        now = time.monotonic()
        if state is not _NO_STATE or now - self._asked_at >= CHECKPOINT_ASK:
            self._asked_at = now
            raw = None if state is _NO_STATE else encode(state, "checkpoint state")
            self._ask(["checkpoint", raw])

    def progress(  # type: ignore[override]  # a sync task's own form
        self, completed: float, total: float | None = None, details: str | None = None
    ) -> None:
        self._check()
        self._ask(["progress", completed, total, details])

    def _check(self) -> None:
        if self.ended:
            raise RunStoppedError("ended")
        if _stopped.is_set():
            raise RunStoppedError(_STOPPED)

    def _ask(self, msg: list[Any]) -> None:
        reply = self._channel.ask(msg)
        if reply[0] != "ok":
            if reply[1] == "RunStoppedError":
                _stopped.set()
            raise _ERRORS.get(reply[1], PoolError)(reply[2])
        self._check()


class ChildRunContext(RunContext):
    """What an ``async def`` task gets in a child process (it runs on a loop of its own;
    the asks go from a thread, so the task's other coroutines go on meanwhile)."""

    def __init__(self, sync: ChildSyncRunContext) -> None:
        vars(self).update(vars(sync))
        self._sync = sync

    def is_owned(self) -> bool:
        return self._sync.is_owned()

    async def progress(
        self, completed: float, total: float | None = None, details: str | None = None
    ) -> None:
        await asyncio.to_thread(self._sync.progress, completed, total, details)

    async def checkpoint(self, state: Any = _NO_STATE) -> None:
        await asyncio.to_thread(self._sync.checkpoint, state)

    @contextlib.asynccontextmanager
    async def hold(self, key: str, *, timeout: float | None = None) -> AsyncIterator[None]:
        """Not in a child process: a hold is its worker's, kept in the worker's loop."""
        raise InvalidArgumentError("run.hold() is not available with isolation='process'")
        yield  # an async generator, as the method it overrides


def _logger(channel: _Channel) -> FilteringBoundLogger:
    """``run.log`` in a child: each event goes to the worker, which logs it (its config)."""

    def forward(_: Any, method: str, event: MutableMapping[str, Any]) -> Any:
        channel.send(["log", method, dict(event)])
        raise structlog.DropEvent

    return cast(
        FilteringBoundLogger,
        structlog.wrap_logger(
            structlog.PrintLogger(),
            processors=[structlog.processors.format_exc_info, forward],
            wrapper_class=structlog.make_filtering_bound_logger(0),
        ),
    )

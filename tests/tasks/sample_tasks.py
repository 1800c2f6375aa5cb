"""Tasks the tests run in worker processes (tests/tasks/worker_proc.py) and submit from the
test process. Runs append ``<monotonic ns> <pid> start|end|stopped <key> <attempt> <epoch>``
to the file named by $REDPOOL_TASK_EVENTS with one O_APPEND write each."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal as sig
import time
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import tenacity

import redpool
from redpool import Retry, RunContext, SyncRunContext

tasks = redpool.Tasks()


def record(run: RunContext, what: str) -> None:
    path = os.environ.get("REDPOOL_TASK_EVENTS")
    if not path:
        return
    line = f"{time.monotonic_ns()} {os.getpid()} {what} {run.key} {run.attempt} {run.epoch}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


async def count_start(run: RunContext) -> None:
    """Record the run's start in Redis (``test:starts:<key>``): a count no process can lose."""
    client = aioredis.Redis.from_url(os.environ["REDPOOL_TEST_REDIS"])
    try:
        await client.rpush(f"test:starts:{run.key}", f"{run.worker_id} {run.epoch}")
    finally:
        await client.aclose()


@dataclass
class AddParams:
    a: int
    b: int


@dataclass
class AddResult:
    total: int
    worker: str


@tasks.task(name="add")
async def add(run: RunContext, params: AddParams) -> AddResult:
    """Add two numbers."""
    return AddResult(params.a + params.b, run.worker_id)


@tasks.task(name="sleep")
async def sleep(run: RunContext, params: dict[str, Any]) -> str:
    record(run, "start")
    try:
        await asyncio.sleep(params["s"])
    except asyncio.CancelledError:
        record(run, "stopped")
        raise
    record(run, "end")
    return "slept"


@tasks.task(name="boom")
async def boom(run: RunContext, params: None) -> None:
    raise ValueError("boom")


@tasks.task(
    name="flaky",
    retry=Retry(max_attempts=4, wait=tenacity.wait_fixed(0.2)),
)
async def flaky(run: RunContext, params: dict[str, int]) -> int:
    """Fails until its attempt reaches params['succeed_at']."""
    record(run, "start")
    if run.attempt < params["succeed_at"]:
        raise RuntimeError(f"attempt {run.attempt} fails")
    return run.attempt


@tasks.task(
    name="picky",
    retry=Retry(
        max_attempts=5,
        wait=tenacity.wait_fixed(0.05),
        retry=tenacity.retry_if_not_exception_type(ValueError),
    ),
)
async def picky(run: RunContext, params: str) -> None:
    """Raises the exception named by params: ValueError is not retried."""
    record(run, "start")
    raise {"ValueError": ValueError, "KeyError": KeyError}[params](params)


@tasks.task(name="signal")
async def signal(run: RunContext, params: str) -> None:
    if params == "skip":
        raise redpool.Skip("nothing to do")
    if params == "fail":
        raise redpool.Fail("given up")
    raise redpool.RetryLater(0.1)


@tasks.task(name="sync_add")
def sync_add(run: RunContext, params: AddParams) -> int:
    return params.a + params.b


@tasks.task(name="echo")
async def echo(run: RunContext, params: str) -> str:
    """Returns its params after a short run (recorded)."""
    record(run, "start")
    await asyncio.sleep(0.1)
    record(run, "end")
    return params


@tasks.task(name="steps")
async def steps(run: RunContext, n: int) -> None:
    """Reports n steps of progress, then waits to be canceled."""
    for i in range(n):
        await run.progress(i + 1, n, details=f"step {i + 1}")
    await asyncio.sleep(3600)


@tasks.task(name="sync_ticks")
def sync_ticks(run: SyncRunContext, params: str) -> None:
    """Records a tick every 10 ms until stopped, at ``run.checkpoint()`` or, when params is
    "progress", at ``run.progress()``."""
    record(run, "start")
    try:
        for i in itertools.count():
            if params == "progress":
                run.progress(i)
            else:
                run.checkpoint()
            record(run, "tick")
            time.sleep(0.01)
    except redpool.RunStoppedError:
        record(run, "stopped")
        raise


@tasks.task(name="sync_spin")
def sync_spin(run: SyncRunContext, params: None) -> None:
    """A pure-Python busy loop with no checkpoint: only the async exception stops it."""
    record(run, "start")
    n = 0
    try:
        while True:
            n += 1
    except redpool.RunStoppedError:
        record(run, "stopped")
        raise


@tasks.task(name="stuck", timeout=0.3)
async def stuck(run: RunContext, params: None) -> None:
    """Sleeps past its own timeout (the task's definition sets 0.3 s)."""
    await asyncio.sleep(3600)


@tasks.task(name="stall_once", stall_timeout=0.5)
async def stall_once(run: RunContext, params: None) -> int:
    """Hangs without a sign of life on its first run (its worker stops it as stalled); the
    run after that ends at once. Returns its interruptions."""
    await count_start(run)
    record(run, "start")
    if run.interrupts == 0:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            record(run, "stopped")
            raise
    record(run, "end")
    return run.interrupts


@tasks.task(name="slow_steps", stall_timeout=0.5)
async def slow_steps(run: RunContext, steps: int) -> int:
    """Takes steps x 0.1 s, far past its stall timeout, with a progress() after each step
    (odd steps) or a checkpoint() (even ones)."""
    await count_start(run)
    record(run, "start")
    for i in range(steps):
        await asyncio.sleep(0.1)
        if i % 2:
            await run.progress(i + 1, steps)
        else:
            await run.checkpoint()
    record(run, "end")
    return steps


_leaked: list[RunContext] = []


@tasks.task(name="progress_errors")
async def progress_errors(run: RunContext, params: None) -> list[str]:
    """The errors of a progress past its total, and of one through the context of a run that
    ended (kept from the previous run of this task)."""
    seen = []
    try:
        await run.progress(5, 3)
    except redpool.InvalidArgumentError as exc:
        seen.append(type(exc).__name__)
    if _leaked:
        try:
            await _leaked[0].progress(1, 2)
        except redpool.RunStoppedError as exc:
            seen.append(type(exc).__name__)
    _leaked.append(run)
    return seen


def _count_from(run: RunContext) -> int:
    """Where a counter starts: its checkpoint state, if any; records how it began."""
    n = int((run.checkpoint_state or {}).get("n", 0))
    last = run.last_progress.completed if run.last_progress else -1
    record(run, f"begin:{int(run.resumed)}:{n}:{last:g}")
    return n


@tasks.task(name="counter", suspendable=True, on_suspend=lambda run: record(run, "on_suspend"))
async def counter(run: RunContext, params: dict[str, Any]) -> int:
    """Counts to params['to'], one step per params['step'] s, in a local variable; records
    each count and checkpoints after it (with its state and progress when params['save']),
    and records having passed that checkpoint."""
    n = _count_from(run)
    while n < params["to"]:
        n += 1
        record(run, f"tick:{n}")
        if params.get("save"):
            await run.progress(n, params["to"])
            await run.checkpoint({"n": n})
        else:
            await run.checkpoint()
        record(run, f"passed:{n}")
        await asyncio.sleep(params.get("step", 0.02))
    return n


# The counter again, with a stall timeout far below the pauses the tests make.
steady_counter = tasks.task(name="steady_counter", stall_timeout=0.3)(counter.fn)


@tasks.task(name="sync_counter", suspendable=True)
def sync_counter(run: SyncRunContext, params: dict[str, Any]) -> int:
    """counter's sync twin (in a thread): checkpoints with its state after each count."""
    n = _count_from(run)
    while n < params["to"]:
        n += 1
        record(run, f"tick:{n}")
        run.checkpoint({"n": n})
        time.sleep(params.get("step", 0.02))
    return n


@tasks.task(name="big", max_result_size=1000)
async def big(run: RunContext, n: int) -> str:
    """Returns n bytes of text; its results may be at most 1000 bytes encoded."""
    return "x" * n


async def wait_gate(name: str) -> None:
    """Wait until the test opens the gate: pushes to the list ``test:gate:<name>``."""
    client = aioredis.Redis.from_url(os.environ["REDPOOL_TEST_REDIS"])
    try:
        await client.blpop([f"test:gate:{name}"], timeout=0)
    finally:
        await client.aclose()


@tasks.task(name="gated")
async def gated(run: RunContext, params: None) -> str:
    """Runs until the test opens its run's own gate (``test:gate:<key>:<epoch>``): under
    way for as long as the test needs, however slow the machine, and a stale copy of the
    run never takes the gate meant for the current one."""
    record(run, "start")
    try:
        await wait_gate(f"{run.key}:{run.epoch}")
    except asyncio.CancelledError:
        record(run, "stopped")
        raise
    record(run, "end")
    return "opened"


@tasks.task(name="holder")
async def holder(run: RunContext, params: dict[str, str]) -> str:
    """Holds params['target'] until the test opens its gate; then, by params['how']: 'exit'
    leaves the hold's block and runs on (until canceled); 'succeed' / 'fail' end the run
    still inside the block, so only the run's end releases the hold (as 'cancel' and 'kill',
    where the test cancels the run or kills its worker at the gate)."""
    how = params["how"]
    block = run.hold(params["target"])
    await block.__aenter__()  # left open on purpose but for 'exit'
    record(run, "held")
    try:
        await wait_gate(run.key)
    except asyncio.CancelledError:
        record(run, "stopped")
        raise
    if how == "exit":
        record(run, "releasing")
        await block.__aexit__(None, None, None)
        await asyncio.sleep(3600)
    record(run, "end")
    if how == "fail":
        raise RuntimeError("the holder fails")
    return how


@tasks.task(name="grab")
async def grab(run: RunContext, params: str) -> list[str]:
    """Once the test opens its gate, holds the key params (waiting while it is busy):
    ['held'], or ['cycle', *chain] when the hold was refused."""
    await wait_gate(run.key)
    try:
        async with run.hold(params):
            return ["held"]
    except redpool.HoldCycleError as exc:
        return ["cycle", *exc.chain]


@tasks.task(name="grab_holding")
async def grab_holding(run: RunContext, keys: list[str]) -> list[str]:
    """Holds keys[0] and, inside that hold, does what grab does for keys[1]."""
    async with run.hold(keys[0]):
        record(run, "held")
        result: list[str] = await grab.fn(run, keys[1])
        return result


@tasks.task(name="grab_within")
async def grab_within(run: RunContext, params: list[Any]) -> list[str]:
    """Holds the key params[0], waiting at most params[1] s: ['held'] or ['timeout']."""
    try:
        async with run.hold(params[0], timeout=params[1]):
            return ["held"]
    except redpool.WaitTimeoutError:
        return ["timeout"]


@tasks.task(name="sync_stall_once", stall_timeout=0.5)
def sync_stall_once(run: SyncRunContext, params: None) -> int:
    """stall_once in a thread: its first run spins with no checkpoint (only the async
    exception stops it), the next ends at once."""
    record(run, "start")
    if run.interrupts == 0:
        try:
            while True:
                pass
        except redpool.RunStoppedError:
            record(run, "stopped")
            raise
    record(run, "end")
    return run.interrupts


@tasks.task(name="brief", keep=0.3, keep_failed=0.3)
async def brief(run: RunContext, params: str) -> str:
    """Kept only 0.3 s once finished (the task's own keep times)."""
    if params == "fail":
        raise RuntimeError("brief failure")
    return params


@tasks.task(name="big_state")
async def big_state(run: RunContext, size: int) -> str:
    """Checkpoints a state of ``size`` bytes; returns the error it got ('' if none)."""
    try:
        await run.checkpoint({"blob": b"x" * size})
    except redpool.InvalidArgumentError as exc:
        return type(exc).__name__
    return ""


@tasks.task(name="whoami")
def whoami(run: SyncRunContext, params: None) -> dict[str, Any]:
    """Where the run executes, what it sees of its run, and its progress and log calls."""
    run.progress(1, 2, details="half")
    run.log.info("child says hello", n=7)
    return {"pid": os.getpid(), "owned": run.is_owned(), "attempt": run.attempt}


@tasks.task(name="async_whoami")
async def async_whoami(run: RunContext, params: None) -> dict[str, Any]:
    await run.progress(2, 2, details="done")
    await run.checkpoint()
    return {"pid": os.getpid(), "owned": run.is_owned()}


@tasks.task(name="async_spin")
async def async_spin(run: RunContext, params: None) -> None:
    """A busy loop in an async task: no await, so no cancellation can stop it."""
    record(run, "start")
    while True:
        pass


@tasks.task(name="stubborn")
def stubborn(run: SyncRunContext, params: None) -> None:
    """Ignores SIGTERM, then spins: only a SIGKILL ends it."""
    sig.signal(sig.SIGTERM, sig.SIG_IGN)
    record(run, "start")
    while True:
        pass


@tasks.task(name="crash", retry=Retry(max_attempts=2))
def crash(run: SyncRunContext, params: str) -> None:
    """Its child process dies: exits with code 3, or SIGKILLs itself."""
    record(run, "start")
    if params == "exit":
        os._exit(3)
    os.kill(os.getpid(), sig.SIGKILL)


@tasks.task(name="ticker")
def ticker(run: SyncRunContext, params: None) -> None:
    """Records a tick every 20 ms, without a checkpoint, until its process ends."""
    record(run, "start")
    while True:
        record(run, "tick")
        time.sleep(0.02)


async def _puppet(run: RunContext, params: None) -> str:
    """Does only what the test tells it (tests/tasks/test_control_model.py): pops commands
    from ``test:model:cmd:<key>``, acknowledges each on ``test:model:ack:<key>``, and then
    'checkpoint's (where it pauses or stops for a suspend), 'finish'es or 'fail's. Appends
    ``start|end <key> <epoch>`` to ``test:model:runs`` around its whole run (an end also when
    its code is stopped), so the test sees every run begin and end."""
    url = os.environ["REDPOOL_TEST_REDIS"]
    # Two clients: a cancel during the blocking pop may leave that connection waiting on it,
    # and the end must still be written.
    client, commands = aioredis.Redis.from_url(url), aioredis.Redis.from_url(url)
    try:  # a cancel may come during the first write: the end is written all the same
        await client.rpush("test:model:runs", f"start {run.key} {run.epoch}")
        while True:
            _, command = await commands.blpop([f"test:model:cmd:{run.key}"], timeout=0)
            await client.rpush(f"test:model:ack:{run.key}", command)
            if command == b"finish":
                return "finished"
            if command == b"fail":
                raise redpool.Fail("told to fail")
            await run.checkpoint()
    finally:
        await client.rpush("test:model:runs", f"end {run.key} {run.epoch}")
        await client.aclose()
        await commands.aclose()


puppet = tasks.task(name="puppet", suspendable=True)(_puppet)
rigid_puppet = tasks.task(name="rigid_puppet")(_puppet)  # the same, not suspendable

"""A pool member in its own OS process, for cross-process and fault tests.

    python -m tests.proc URL POOL EVENTS_FILE [--workers N] [--capacity N] [--ttl S] [--grace S]
        [--client] [--slow-stop S] [--shutdown-ttl S]
        (--slow-stop: each stop() takes S seconds first; inf: stop() never returns)

It prints ``ready <node id>`` once joined, then obeys one command per stdin line and answers
``ok ...`` or ``error <class> <message>``:

    dispatch KEY [PAYLOAD]   stop KEY   keys   race KEY N   add   remove   close   shutdown
    dispatch-many PREFIX N   (N keys PREFIX0.. at once; answers "<started> <timed out>")
    notify KEY PAYLOAD       ticker NAME SECONDS   idle-ticker NAME SECONDS   stop-ticker NAME
    schedule NAME SECONDS

Every start() and stop() of its handler appends ``<monotonic ns> <pid> <start|stop> <key>`` to
EVENTS_FILE with one O_APPEND write (CLOCK_MONOTONIC is shared by all processes of a machine),
so a kill -9 loses no line that describes work the process did. While a job runs, its handler
also appends ``tick`` lines, but only while ``job.is_owned()``: the work a fenced worker must
not do. Notifications append ``note KEY:PAYLOAD``; tickers ``ticked NAME@DUE_MS``; schedules
``plan NAME`` each time this process ran plan() (whose JobPlan the test writes, as JSON, to the
Redis key ``test-plan:NAME``; ``"stop"`` there makes plan() raise ScheduleStop).

A job's payload can make its start() misbehave: ``hang`` never returns after its ``start``
line (an await that never completes); ``block:SECONDS:PATH`` blocks the event loop for
SECONDS (time.sleep in the async start) on the first process that creates the file PATH, and
starts normally elsewhere; ``slow:SECONDS`` takes SECONDS (asleep) after its ``start`` line.

When Redis lost the pool's state, ``on_state_lost`` appends ``lost KEY`` per job it was given and
dispatches each again (the use the README recommends).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Sequence

import redis.asyncio as aioredis
import structlog

import redpool


class EventLog:
    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, event: str, key: str) -> None:
        os.write(self._fd, f"{time.monotonic_ns()} {os.getpid()} {event} {key}\n".encode())


class TickingHandler:
    """Starts a small ticking task per job, like a real long-running job."""

    def __init__(self, log: EventLog, tick: float, slow_stop: float = 0.0) -> None:
        self._log = log
        self._tick = tick
        self._slow_stop = slow_stop
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def start(self, job: redpool.Job) -> None:
        if job.payload.startswith(b"block:"):
            _, seconds, path = job.payload.decode().split(":", 2)
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                pass
            else:
                time.sleep(float(seconds))  # noqa: ASYNC251 - the stall under test
        self._log.write("start", job.key)
        try:
            if job.payload == b"hang":
                await asyncio.Event().wait()
            if job.payload.startswith(b"slow:"):
                await asyncio.sleep(float(job.payload[5:]))
        except asyncio.CancelledError:  # start_timeout or fencing: this start() did not happen
            self._log.write("stop", job.key)
            raise
        self._tasks[job.key] = asyncio.create_task(self._run(job))

    async def _run(self, job: redpool.Job) -> None:
        while True:
            await asyncio.sleep(self._tick)
            if job.is_owned():
                self._log.write("tick", job.key)

    async def stop(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()
        if self._slow_stop:
            await asyncio.sleep(self._slow_stop)  # a job that takes time to wind down
        self._log.write("stop", key)

    async def handle_notification(self, key: str, payload: bytes) -> None:
        self._log.write("note", f"{key}:{payload.decode()}")


class TestProducer:
    """plan() as the test wrote it to Redis."""

    def __init__(self, name: str, redis: aioredis.Redis, log: EventLog) -> None:
        self.name = name
        self._redis = redis
        self._log = log

    async def plan(self) -> redpool.JobPlan:
        self._log.write("plan", self.name)
        raw = await self._redis.get(f"test-plan:{self.name}")
        spec = json.loads(raw) if raw else {}
        if spec == "stop":
            raise redpool.ScheduleStop
        return redpool.JobPlan(
            start=[redpool.JobParam(k) for k in spec.get("start", [])],
            stop=spec.get("stop", []),
            stop_all=spec.get("stop_all", False),
        )


async def _consume(ticker: redpool.Ticker, log: EventLog) -> None:
    async for tick in ticker:
        log.write("ticked", f"{ticker.name}@{round(tick.timestamp() * 1000)}")


async def _race(node: redpool.Node, key: str, n: int) -> str:
    results = await asyncio.gather(
        *(node.dispatch_job(key) for _ in range(n)), return_exceptions=True
    )
    ok = sum(r is None for r in results)
    exists = sum(isinstance(r, redpool.JobExistsError) for r in results)
    return f"{ok} {exists}"


async def _dispatch_many(node: redpool.Node, prefix: str, n: int) -> str:
    results = await asyncio.gather(
        *(node.dispatch_job(f"{prefix}{i}") for i in range(n)), return_exceptions=True
    )
    others = [
        r for r in results if r is not None and not isinstance(r, redpool.DispatchTimeoutError)
    ]
    if others:
        raise others[0]
    return f"{results.count(None)} {len(results) - results.count(None)}"


def _dump_tasks() -> None:
    """SIGUSR1: print every task's stack to stderr, to see where a process is stuck."""
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("pool")
    parser.add_argument("events")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--capacity", type=int, default=None)
    parser.add_argument("--ttl", type=float, default=1.0)
    parser.add_argument("--grace", type=float, default=2.0)
    parser.add_argument("--tick", type=float, default=0.02)
    parser.add_argument("--client", action="store_true")
    parser.add_argument("--slow-stop", type=float, default=0.0)
    parser.add_argument("--start-timeout", type=float, default=None)
    parser.add_argument("--shutdown-ttl", type=float, default=120.0)
    args = parser.parse_args()

    # stdout is the command channel; logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    log = EventLog(args.events)
    node: redpool.Node | None = None

    async def again(job: redpool.Job) -> None:
        assert node is not None
        log.write("lost", job.key)
        with contextlib.suppress(redpool.PoolError):
            await node.dispatch_job(job.key, job.payload)

    async def redispatch(jobs: Sequence[redpool.Job]) -> None:
        await asyncio.gather(*(again(job) for job in jobs))

    node = await redpool.add_node(
        args.pool,
        args.url,
        worker_ttl=args.ttl,
        ack_grace_period=args.grace,
        client_only=args.client,
        job_sink_block=1.0,
        max_queued_jobs=100_000,
        start_timeout=args.start_timeout,
        worker_shutdown_ttl=args.shutdown_ttl,
        on_state_lost=redispatch,
    )
    workers = [
        await node.add_worker(TickingHandler(log, args.tick, args.slow_stop), args.capacity)
        for _ in range(args.workers)
    ]
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tickers: dict[str, redpool.Ticker] = {}
    background: list[asyncio.Task[None]] = []
    plans = aioredis.Redis.from_url(args.url)
    print(f"ready {node.id}", flush=True)

    async def commands() -> None:
        while line := (await reader.readline()).decode().split():
            cmd, rest = line[0], line[1:]
            try:
                out = ""
                if cmd == "dispatch":
                    await node.dispatch_job(rest[0], rest[1].encode() if len(rest) > 1 else b"")
                elif cmd == "stop":
                    await node.stop_job(rest[0])
                elif cmd == "keys":
                    out = " ".join(await node.job_keys())
                elif cmd == "race":
                    out = await _race(node, rest[0], int(rest[1]))
                elif cmd == "dispatch-many":
                    out = await _dispatch_many(node, rest[0], int(rest[1]))
                elif cmd == "add":
                    workers.append(
                        await node.add_worker(TickingHandler(log, args.tick, args.slow_stop))
                    )
                elif cmd == "remove":
                    await node.remove_worker(workers.pop())
                elif cmd == "close":
                    await node.close()
                elif cmd == "shutdown":
                    await node.shutdown()
                elif cmd == "notify":
                    await node.notify_worker(rest[0], rest[1].encode())
                elif cmd in ("ticker", "idle-ticker"):
                    tickers[rest[0]] = await node.new_ticker(rest[0], float(rest[1]))
                    if cmd == "ticker":
                        background.append(asyncio.create_task(_consume(tickers[rest[0]], log)))
                elif cmd == "stop-ticker":
                    await tickers[rest[0]].stop()
                elif cmd == "schedule":
                    await node.schedule(TestProducer(rest[0], plans, log), float(rest[1]))
                print(f"ok {out}".rstrip(), flush=True)
            except Exception as exc:
                print(f"error {type(exc).__name__} {exc}".replace("\n", " "), flush=True)
        done.set()

    task = asyncio.create_task(commands())
    await done.wait()
    task.cancel()
    await node.close()


if __name__ == "__main__":
    asyncio.run(main())

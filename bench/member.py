"""A redpool pool member in its own OS process, for the benchmarks.

    python -m bench.member URL POOL --label p0 [--workers N] [--ttl S] [--events FILE]

It joins POOL with N workers whose handler's start() returns at once, prints ``ready <node
id>``, then obeys one command per stdin line, answering ``ok ...`` or ``error <class> <text>``:

    add        add one more worker
    remove     remove the last worker (remove_worker: its jobs move elsewhere)
    count      number of jobs this process runs

It leaves (node.close()) on SIGTERM or end of input, and exits once the pool was shut down.
With --events, every start() and stop() appends ``<monotonic ns> <label>.<worker> <start|stop>
<key>`` to FILE in one O_APPEND write, so a kill -9 loses no line of work that was done.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable

import structlog

import redpool


class EventFile:
    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, worker: str, kind: str, key: str) -> None:
        os.write(self._fd, f"{time.monotonic_ns()} {worker} {kind} {key}\n".encode())


class InstantHandler:
    """A job that is 'running' as soon as start() returns, and holds nothing."""

    def __init__(self, name: str, events: EventFile | None) -> None:
        self.name = name
        self.events = events

    async def start(self, job: redpool.Job) -> None:
        if self.events is not None:
            self.events.write(self.name, "start", job.key)

    async def stop(self, key: str) -> None:
        if self.events is not None:
            self.events.write(self.name, "stop", key)


def _dump_tasks() -> None:
    """SIGUSR1: print the stack of every task to stderr, to see where a member is stuck."""
    for task in asyncio.all_tasks():
        print(f"--- {task.get_name()}", file=sys.stderr)
        task.print_stack(file=sys.stderr)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("pool")
    parser.add_argument("--label", required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--ttl", type=float, default=10.0)
    parser.add_argument("--events")
    args = parser.parse_args()

    configure_logging()
    events = EventFile(args.events) if args.events else None
    node = await redpool.add_node(args.pool, args.url, worker_ttl=args.ttl, max_queued_jobs=100_000)
    seq = 0
    workers: list[redpool.Worker] = []

    async def add() -> None:
        nonlocal seq
        workers.append(await node.add_worker(InstantHandler(f"{args.label}.{seq}", events)))
        seq += 1

    for _ in range(args.workers):
        await add()

    async def command(line: str) -> str:
        if line == "add":
            await add()
        elif line == "remove":
            await node.remove_worker(workers.pop())
        elif line == "count":
            return str(sum(len(w.jobs()) for w in node.workers()))
        else:
            raise ValueError(f"unknown command {line!r}")
        return ""

    await serve(node, command)


def configure_logging() -> None:
    """stdout is the command channel: logs (INFO and up) go to stderr."""
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
    )


async def serve(node: redpool.Node, command: Callable[[str], Awaitable[str]]) -> None:
    """Print ``ready <node id>``, answer each stdin line with ``ok <what command returned>``
    or ``error <class> <text>``; close the node on SIGTERM, end of input, or once the pool
    was shut down."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, done.set)
    loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(f"ready {node.id}", flush=True)

    async def commands() -> None:
        while line := (await reader.readline()).decode().strip():
            try:
                out = await command(line)
                print(f"ok {out}".rstrip(), flush=True)
            except Exception as exc:
                print(f"error {type(exc).__name__} {exc}".replace("\n", " "), flush=True)
        done.set()

    async def watch_shutdown() -> None:
        while not node.is_shutdown():  # noqa: ASYNC110 (a shutdown comes from another process)
            await asyncio.sleep(0.05)
        done.set()

    tasks = [asyncio.create_task(commands()), asyncio.create_task(watch_shutdown())]
    await done.wait()
    for task in tasks:
        task.cancel()
    await node.close()
    print("member exiting", file=sys.stderr, flush=True)


if __name__ == "__main__":
    asyncio.run(main())

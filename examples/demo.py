"""redpool demo: 3 worker processes, 1 client-only dispatcher, a worker leaving, a shutdown.

    make demo                      # uses $REDIS_URL, else starts a throwaway redis-server
    python examples/demo.py

The parent process only orchestrates and prints; every pool member is its own OS process.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import structlog

import redpool

POOL = os.environ.get("REDPOOL_DEMO_POOL", f"demo-{os.getpid()}")
KEYS = [f"job-{i:02d}" for i in range(20)]


# -- pool members (child processes) -----------------------------------------------------------


class PrintingHandler:
    """A job that 'runs' until stopped; it says so on stdout for the parent to show."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def start(self, job: redpool.Job) -> None:
        print(f"start {self.name} {job.key}", flush=True)

    async def stop(self, key: str) -> None:
        print(f"stop {self.name} {key}", flush=True)


async def worker(url: str, name: str) -> None:
    node = await redpool.add_node(POOL, url, worker_ttl=2.0, ack_grace_period=2.0)
    await node.add_worker(PrintingHandler(name))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    # stdin closes when the parent dies: leave then too, rather than linger as an orphan.
    def watch_parent() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_parent, daemon=True).start()
    print("ready", flush=True)
    # A pool shutdown comes from another process: poll for it.
    while not (stop.is_set() or node.is_shutdown()):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    await node.close()  # after a pool shutdown this is a no-op


async def dispatcher(url: str) -> None:
    node = await redpool.add_node(POOL, url, client_only=True)
    await asyncio.gather(*(node.dispatch_job(key, key.encode()) for key in KEYS))
    print(f"dispatched {len(await node.job_keys())}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await node.shutdown()
    print("shutdown", flush=True)


# -- the orchestrating parent -------------------------------------------------------------------


@contextmanager
def redis_url() -> Iterator[str]:
    if url := os.environ.get("REDIS_URL"):
        yield url
        return
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("no redis-server on PATH: set REDIS_URL (docker compose up -d redis)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="redpool-demo-")
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline:
                sys.exit("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)


class Child:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def spawn(cls, *args: str) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "REDPOOL_DEMO_POOL": POOL},
        )  # fmt: skip
        return cls(proc)

    async def line(self) -> list[str]:
        assert self.proc.stdout is not None
        return (await asyncio.wait_for(self.proc.stdout.readline(), 20)).decode().split()


async def orchestrate(url: str) -> None:
    owner: dict[str, str] = {}
    names = ["A", "B", "C"]
    workers = {name: await Child.spawn("worker", url, name) for name in names}
    for child in workers.values():
        assert await child.line() == ["ready"]
    print(f"pool {POOL!r}: 3 worker processes joined")

    async def follow(child: Child) -> None:
        while words := await child.line():
            if words[0] == "start":
                owner[words[2]] = words[1]
            elif words[0] == "stop" and owner.get(words[2]) == words[1]:
                del owner[words[2]]

    followers = [asyncio.create_task(follow(c)) for c in workers.values()]
    client = await Child.spawn("dispatch", url)
    print(f"client-only process: {' '.join(await client.line())} jobs, each started")
    await until(lambda: len(owner) == len(KEYS))
    for name in names:
        print(f"  worker {name} runs {sorted(k for k, w in owner.items() if w == name)}")

    leaving = names[0]
    moving = sorted(k for k, w in owner.items() if w == leaving)
    print(f"worker {leaving} leaves (SIGTERM -> node.close()); its {len(moving)} jobs move:")
    workers[leaving].proc.send_signal(signal.SIGTERM)
    await until(lambda: all(owner.get(k) not in (None, leaving) for k in moving))
    for key in moving:
        print(f"  {key}: {leaving} -> {owner[key]}")

    assert client.proc.stdin is not None
    client.proc.stdin.write(b"shutdown\n")
    print(f"client shuts the pool down: {' '.join(await client.line())}")
    await until(lambda: not owner)
    codes = [await c.proc.wait() for c in [*workers.values(), client]]
    for task in followers:
        task.cancel()
    print(f"every job stopped, every process exited {set(codes)}; done")
    if any(codes):
        sys.exit(1)


async def until(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            sys.exit("demo: timed out")
        await asyncio.sleep(0.02)


def main() -> None:
    role = sys.argv[1] if len(sys.argv) > 1 else "demo"
    # Children talk to the parent on stdout; their logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    if role == "worker":
        asyncio.run(worker(sys.argv[2], sys.argv[3]))
    elif role == "dispatch":
        asyncio.run(dispatcher(sys.argv[2]))
    else:
        started = time.monotonic()
        with redis_url() as url:
            asyncio.run(orchestrate(url))
        print(f"demo took {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()

"""The peers of the tasks scenario, each with 2 worker processes on the run's redis-server (a
database each): taskiq (taskiq-redis streams broker + Redis result backend), Dramatiq
(defaults, and with ``dramatiq_worker_timeout=2``), SAQ, Celery (Redis broker + Redis result
backend), arq and RQ. The same trivial job as every peer (bench/peers/record.py); the
records go to the scenario's own record server, so commandstats of the run's server count
only the queue's own commands. A peer that cannot be installed or run is n/a, with why."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar, cast

import redis

from .common import calls_of, delta, summary_ms
from .peer_queues import (
    Peer,
    bin_dir,
    bulk_throughput,
    check_alive,
    prepare,
    sequential_latency,
    start_workers,
    stop_worker,
    warm_up,
)

T = TypeVar("T")


@dataclass(frozen=True)
class TaskPeer(Peer):
    env: dict[str, str] = field(default_factory=dict)  # for its worker processes

    def worker_commands(self, bin_dir: Path, url: str) -> list[list[str]]:
        if self.dist == "taskiq":
            return [[str(bin_dir / "taskiq"), "worker", f"{self.module}:broker", "--workers", "2"]]
        if self.dist == "saq":
            return [[str(bin_dir / "saq"), f"{self.module}.settings", "--workers", "2"]]
        return super().worker_commands(bin_dir, url)


PEERS = [
    TaskPeer(
        "taskiq",
        "taskiq",
        5,
        "bench.peers.taskiq_app",
        "RedisStreamBroker (XREADGROUP), result backend polled every 0.2 s",
    ),
    TaskPeer(
        "Dramatiq",
        "dramatiq",
        6,
        "bench.peers.dramatiq_tasks",
        "idle consumer polls with backoff up to 1 s; no result backend",
    ),
    TaskPeer(
        "Dramatiq (timeout 2 ms)",
        "dramatiq",
        7,
        "bench.peers.dramatiq_tasks",
        "dramatiq_worker_timeout=2: backoff up to 2 ms; no result backend",
        env={"dramatiq_worker_timeout": "2"},
    ),
    TaskPeer("SAQ", "saq", 8, "bench.peers.saq_worker", "BLMOVE dequeue, concurrency 10/proc"),
    TaskPeer(
        "Celery",
        "celery",
        9,
        "bench.peers.celery_results",
        "prefork 2 children, BRPOP, Redis result backend",
    ),
    TaskPeer("arq", "arq", 10, "bench.peers.arq_worker", "polls every 0.5 s (poll_delay)", 0.5),
    TaskPeer("RQ", "rq", 11, "bench.peers.rq_tasks", "default Worker forks a work horse per job"),
]


class _Loop:
    """An event loop of its own for an async peer's client, driven from this thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        self.loop.close()


class Client:
    """How the harness enqueues a peer's trivial job, and waits for its result (None: the
    peer has no result backend)."""

    def __init__(self, peer: TaskPeer, module: ModuleType, url: str) -> None:
        self._close: list[Callable[[], object]] = []
        self.enqueue: Callable[[int], object]
        self.with_result: Callable[[int], object] | None = None
        self.after_flush: Callable[[], object] = lambda: None
        getattr(self, f"_{peer.dist}")(module, url)

    def close(self) -> None:
        for close in reversed(self._close):
            with contextlib.suppress(Exception):
                close()

    def _taskiq(self, module: ModuleType, url: str) -> None:
        loop = _Loop()
        self._close.append(loop.close)
        loop.run(module.broker.startup())
        # Its consumer group (created at startup) reads from '$': a flushed one misses jobs
        # enqueued before the workers created it again.
        self.after_flush = lambda: loop.run(module.broker.startup())
        self._close.append(lambda: loop.run(module.broker.shutdown()))
        kiq = module.trivial.kiq

        async def result(i: int) -> object:
            return await (await kiq(i)).wait_result(timeout=30)

        self.enqueue = lambda i: loop.run(kiq(i))
        self.with_result = lambda i: loop.run(result(i))

    def _saq(self, module: ModuleType, url: str) -> None:
        from saq import Queue

        loop = _Loop()
        self._close.append(loop.close)
        queue = Queue.from_url(url)
        loop.run(queue.connect())
        self._close.append(lambda: loop.run(queue.disconnect()))
        self.enqueue = lambda i: loop.run(queue.enqueue("trivial", job_id=i))
        self.with_result = lambda i: loop.run(queue.apply("trivial", timeout=30, job_id=i))

    def _dramatiq(self, module: ModuleType, url: str) -> None:
        self.enqueue = module.trivial.send

    def _celery(self, module: ModuleType, url: str) -> None:
        delay = module.trivial.delay
        self.enqueue = delay
        self.with_result = lambda i: delay(i).get(timeout=30)

    def _arq(self, module: ModuleType, url: str) -> None:
        from arq import create_pool
        from arq.connections import RedisSettings

        loop = _Loop()
        self._close.append(loop.close)
        pool = loop.run(create_pool(RedisSettings.from_dsn(url)))
        self._close.append(lambda: loop.run(pool.aclose()))

        async def result(i: int) -> object:
            job = await pool.enqueue_job("trivial", i)
            assert job is not None
            return await job.result(timeout=30)

        self.enqueue = lambda i: loop.run(pool.enqueue_job("trivial", i))
        self.with_result = lambda i: loop.run(result(i))

    def _rq(self, module: ModuleType, url: str) -> None:
        from rq import Queue

        conn = redis.Redis.from_url(url)
        self._close.append(conn.close)
        queue = Queue("bench", connection=conn)

        def result(i: int) -> object:
            return queue.enqueue(module.trivial, i).latest_result(timeout=30)

        self.enqueue = lambda i: queue.enqueue(module.trivial, i)
        self.with_result = result


@dataclass(frozen=True)
class Sizes:
    latency: int
    results: int
    throughput: int
    memory: int


def run_peer(peer: TaskPeer, url: str, record_url: str, sizes: Sizes, logs: Path) -> dict[str, Any]:
    """Memory per queued job (no worker yet), then start its workers: sequential latency,
    sequential submit→result, throughput with its Redis commands per job."""
    ver, module, broker, records = prepare(peer, url, record_url)
    commands = peer.worker_commands(bin_dir(), url)
    procs: list[subprocess.Popen[bytes]] = []
    log = logs / f"tasks-peer-{peer.db}.log"
    client: Client | None = None
    out: dict[str, Any] = {"version": ver, "worker_commands": [" ".join(c) for c in commands]}
    try:
        client = Client(peer, module, url)
        out["memory"] = _queued_memory(broker, client, sizes.memory)
        procs += start_workers(commands, peer.env, log)
        warm_up(client.enqueue, records, procs, log)
        out["latency"] = sequential_latency(sizes.latency, peer.poll_s, client.enqueue, records)
        if client.with_result is not None:
            out["result"] = _result_latency(sizes.results, client.with_result)
        calls0 = _calls(broker)
        out["throughput"] = bulk_throughput(sizes.throughput, client.enqueue, records)
        calls = delta(_calls(broker), calls0)
        out["commands_per_job"] = sum(calls.values()) / sizes.throughput
        out["commands_by_command"] = {
            k: round(v / sizes.throughput, 3) for k, v in calls.most_common(8)
        }
        check_alive(procs, log)
    finally:
        if client is not None:
            client.close()
        for proc in procs:
            stop_worker(proc)
        broker.close()
        records.close()
    return out


def _queued_memory(broker: redis.Redis, client: Client, n: int) -> dict[str, float]:
    """used_memory delta over n jobs enqueued while no worker runs, per job."""
    before = _used_memory(broker)
    for i in range(n):
        client.enqueue(i)
    after = _used_memory(broker)
    broker.flushdb()
    client.after_flush()
    return {"jobs": n, "bytes_per_job": (after - before) / n}


def _result_latency(n: int, with_result: Callable[[int], object]) -> dict[str, float]:
    samples = []
    for i in range(n):
        t0 = time.monotonic()
        with_result(200_000 + i)
        samples.append(time.monotonic() - t0)
    return summary_ms(samples)


def _used_memory(client: redis.Redis) -> int:
    return int(cast(dict[str, Any], client.info("memory"))["used_memory"])


def _calls(client: redis.Redis) -> Counter[str]:
    return calls_of(cast(dict[str, dict[str, int]], client.info("commandstats")))

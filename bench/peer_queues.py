"""Scenario 6: peers on the same redis-server, each with 2 worker processes and default
settings: RQ, arq, Celery (Redis broker) and Dramatiq. Enqueue-to-start latency of sequential
trivial jobs (the job body records time.monotonic() in a Redis list) and trivial-job throughput
(enqueue N from this process; until the last body ran). A peer that cannot be installed or run
is reported as n/a with the reason."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, cast

import redis

from .common import ROOT, Context, Result, Row, summary_ms
from .peers.record import RECORDS

NAME = "peers"
RECORD_DB = 15


class PeerError(RuntimeError):
    pass


class Enqueuer(Protocol):
    def enqueue(self, job_id: int) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Peer:
    name: str
    dist: str  # distribution, for its version
    db: int
    module: str
    note: str  # what dominates its latency, from its documented defaults
    poll_s: float = 0.01  # its poll interval: the longest pause between sequential jobs

    def worker_commands(self, bin_dir: Path, url: str) -> list[list[str]]:
        tag = uuid.uuid4().hex[:6]
        quiet = ["--logging_level", "WARNING"]
        pool = ["--pool", "prefork", "--loglevel", "WARNING", "-n", f"bench-{tag}@%h"]
        if self.dist == "rq":
            return [
                [
                    str(bin_dir / "rq"),
                    "worker",
                    "-u",
                    url,
                    "-n",
                    f"bench-{tag}-{i}",
                    *quiet,
                    "bench",
                ]
                for i in range(2)
            ]
        if self.dist == "arq":
            return [[str(bin_dir / "arq"), f"{self.module}.WorkerSettings"] for _ in range(2)]
        if self.dist == "celery":
            return [
                [str(bin_dir / "celery"), "-A", self.module, "worker", "--concurrency", "2", *pool]
            ]
        return [[str(bin_dir / "dramatiq"), self.module, "--processes", "2", "--threads", "1"]]

    def enqueuer(self, module: ModuleType, url: str) -> Enqueuer:
        if self.dist == "rq":
            return _RQ(module, url)
        if self.dist == "arq":
            return _Arq(url)
        return _Call(module)


PEERS = [
    Peer("RQ", "rq", 1, "bench.peers.rq_tasks", "default Worker forks a work horse per job"),
    Peer("arq", "arq", 2, "bench.peers.arq_worker", "polls every 0.5 s (poll_delay)", 0.5),
    Peer(
        "Celery",
        "celery",
        3,
        "bench.peers.celery_app",
        "prefork: 1 consumer + 2 children, BRPOP, prefetch 4",
    ),
    Peer(
        "Dramatiq",
        "dramatiq",
        4,
        "bench.peers.dramatiq_tasks",
        "idle consumer polls with backoff up to 1 s",
    ),
]


class _RQ:
    def __init__(self, module: ModuleType, url: str) -> None:
        from rq import Queue

        self._conn = redis.Redis.from_url(url)
        self._queue = Queue("bench", connection=self._conn)
        self._fn = module.trivial

    def enqueue(self, job_id: int) -> None:
        self._queue.enqueue(self._fn, job_id)

    def close(self) -> None:
        self._conn.close()


class _Arq:
    def __init__(self, url: str) -> None:
        from arq import create_pool
        from arq.connections import RedisSettings

        self._loop = asyncio.new_event_loop()
        self._pool = self._loop.run_until_complete(create_pool(RedisSettings.from_dsn(url)))

    def enqueue(self, job_id: int) -> None:
        self._loop.run_until_complete(self._pool.enqueue_job("trivial", job_id))

    def close(self) -> None:
        self._loop.run_until_complete(self._pool.aclose())
        self._loop.close()


class _Call:
    """Celery's ``task.delay`` and Dramatiq's ``actor.send``."""

    def __init__(self, module: ModuleType) -> None:
        trivial = module.trivial
        self._send = trivial.delay if hasattr(trivial, "delay") else trivial.send

    def enqueue(self, job_id: int) -> None:
        self._send(job_id)

    def close(self) -> None:
        pass


async def run(ctx: Context) -> Result:
    return await asyncio.to_thread(run_sync, ctx)


def run_sync(ctx: Context) -> Result:
    result = Result(NAME)
    versions = {}
    for peer in PEERS:
        t0 = time.monotonic()
        try:
            data = _run_peer(ctx, peer)
        except Exception as exc:
            reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            result.data[peer.name] = {"error": reason}
            for key, metric, unit in _METRICS:
                result.rows.append(
                    Row(
                        NAME,
                        f"{peer.dist}_{key}",
                        f"{peer.name} {metric}",
                        None,
                        unit,
                        None,
                        f"n/a ({reason})",
                    )
                )
            continue
        versions[peer.name] = data["version"]
        data["seconds"] = time.monotonic() - t0
        result.data[peer.name] = data
        lat = data["latency"]
        note = f"{peer.note}; {lat['n']} sequential jobs"
        for pct in ("p50", "p99"):
            result.rows.append(
                ctx.timing(
                    NAME,
                    f"{peer.dist}_{pct}",
                    f"{peer.name} enqueue→start {pct}",
                    lat[f"{pct}_ms"],
                    note,
                )
            )
        tput = data["throughput"]
        note = f"{tput['jobs']:,} jobs; enqueue took {tput['enqueue_s']:.2f} s"
        result.rows.append(
            Row(
                NAME,
                f"{peer.dist}_jobs_per_s",
                f"{peer.name} trivial jobs/s",
                tput["jobs_per_s"],
                "jobs/s",
                None,
                note,
            )
        )
    result.data["versions"] = versions
    return result


_METRICS = [
    ("p50", "enqueue→start p50", "ms"),
    ("p99", "enqueue→start p99", "ms"),
    ("jobs_per_s", "trivial jobs/s", "jobs/s"),
]


def bin_dir() -> Path:
    """The venv's bin directory: the peers' CLIs run from the venv this harness runs in."""
    return Path(sys.executable).parent


def _run_peer(ctx: Context, peer: Peer) -> dict[str, Any]:
    url = ctx.url(peer.db)
    ver, module, broker, records = prepare(peer, url, ctx.url(RECORD_DB))
    commands = peer.worker_commands(bin_dir(), url)
    procs: list[subprocess.Popen[bytes]] = []
    log = ctx.workdir / f"peer-{peer.dist}.log"
    enqueuer: Enqueuer | None = None
    try:
        procs += start_workers(commands, {}, log)
        enqueuer = peer.enqueuer(module, url)
        warm_up(enqueuer.enqueue, records, procs, log)
        latency = sequential_latency(
            ctx.sizes.peer_latency_jobs, peer.poll_s, enqueuer.enqueue, records
        )
        throughput = bulk_throughput(ctx.sizes.peer_throughput_jobs, enqueuer.enqueue, records)
        check_alive(procs, log)
    finally:
        if enqueuer is not None:
            with contextlib.suppress(Exception):
                enqueuer.close()
        for proc in procs:
            stop_worker(proc)
        broker.close()
        records.close()
    return {
        "version": ver,
        "worker_commands": [" ".join(c) for c in commands],
        "latency": latency,
        "latency_pause_max_s": peer.poll_s,
        "throughput": throughput,
        "note": peer.note,
    }


def prepare(
    peer: Peer, url: str, record_url: str
) -> tuple[str, ModuleType, redis.Redis, redis.Redis]:
    """The peer's version, its task module (imported anew: it reads the broker URL when
    imported), and clients of its broker database and of the records, both emptied."""
    try:
        ver = version(peer.dist)
    except PackageNotFoundError:
        raise PeerError(f"{peer.dist} is not installed (pip install -e '.[bench]')") from None
    broker = redis.Redis.from_url(url)
    records = redis.Redis.from_url(record_url)
    broker.flushdb()
    records.delete(RECORDS)
    os.environ["BENCH_BROKER_URL"] = url
    os.environ["BENCH_RECORD_URL"] = record_url
    module = importlib.reload(importlib.import_module(peer.module))
    return ver, module, broker, records


def start_workers(
    commands: list[list[str]], env: dict[str, str], log: Path
) -> list[subprocess.Popen[bytes]]:
    """The peer's worker CLIs, each in a process group of its own (stop_worker ends it)."""
    procs = []
    full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    with log.open("ab") as out:
        for cmd in commands:
            if not Path(cmd[0]).exists():
                raise PeerError(f"{cmd[0]} not found")
            procs.append(
                subprocess.Popen(
                    cmd, cwd=ROOT, env=full_env, stdout=out, stderr=out, start_new_session=True
                )
            )
    return procs


def warm_up(
    enqueue: Callable[[int], object],
    records: redis.Redis,
    procs: list[subprocess.Popen[bytes]],
    log: Path,
) -> None:
    """Enqueue 20 jobs and wait for all (workers may take seconds to boot), then let every
    worker process finish starting."""
    for i in range(20):
        enqueue(-1 - i)
    deadline = time.monotonic() + 60
    while _count(records) < 20:
        check_alive(procs, log)
        if time.monotonic() > deadline:
            raise PeerError(f"warm-up jobs did not run within 60 s: {_tail(log)}")
        time.sleep(0.05)
    time.sleep(2.0)
    records.delete(RECORDS)


def sequential_latency(
    n: int, poll_s: float, enqueue: Callable[[int], object], records: redis.Redis
) -> dict[str, float]:
    """Sequential jobs: enqueue one, wait until its body ran, pause, repeat. The pause is random
    over the peer's poll interval, so that enqueues do not lock onto the workers' poll phase."""
    samples = []
    for i in range(n):
        t0 = time.monotonic()
        enqueue(i)
        while True:
            item = cast(tuple[bytes, bytes] | None, records.blpop([RECORDS], timeout=30))
            if item is None:
                raise PeerError(f"job {i} did not start within 30 s")
            job_id, started = item[1].decode().split()
            if int(job_id) == i:
                break
        samples.append(float(started) - t0)
        time.sleep(random.uniform(0, poll_s))
    return summary_ms(samples)


def bulk_throughput(
    n: int, enqueue: Callable[[int], object], records: redis.Redis
) -> dict[str, float]:
    """Enqueue n jobs one after the other; until the last body ran."""
    records.delete(RECORDS)
    t0 = time.monotonic()
    for i in range(n):
        enqueue(100_000 + i)
    enqueue_s = time.monotonic() - t0
    deadline = time.monotonic() + 300
    while (done := _count(records)) < n:
        if time.monotonic() > deadline:
            raise PeerError(f"only {done} of {n} jobs ran within 300 s")
        time.sleep(0.02)
    ends = [float(raw.split()[1]) for raw in _all(records)]
    elapsed = max(ends) - t0
    return {"jobs": n, "enqueue_s": enqueue_s, "elapsed_s": elapsed, "jobs_per_s": n / elapsed}


def _count(records: redis.Redis) -> int:
    return cast(int, records.llen(RECORDS))


def _all(records: redis.Redis) -> list[bytes]:
    return cast(list[bytes], records.lrange(RECORDS, 0, -1))


def check_alive(procs: list[subprocess.Popen[bytes]], log: Path) -> None:
    for proc in procs:
        if proc.poll() is not None:
            raise PeerError(f"worker exited with {proc.returncode}: {_tail(log)}")


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the worker's process group (it started it), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
    # Children left in the group (Celery/Dramatiq pool processes) go with it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _tail(log: Path, lines: int = 3) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])[:300]

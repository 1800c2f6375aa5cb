"""What every scenario shares: the redis-server of the run, the Redis floor, member processes,
their event files, statistics, and the result rows that become the table and the JSON."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis

import redpool

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
T = TypeVar("T")


# -- sizes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does; ``SMOKE`` is for a quick check that all of it runs."""

    latency_jobs: int = 1000
    latency_warmup: int = 50
    throughput_jobs: int = 20_000
    throughput_inflight: int = 200
    recovery_jobs: int = 1000
    recovery_processes: int = 4
    recovery_runs: int = 5
    recovery_ttls: tuple[float, ...] = (2.0, 10.0)
    rebalance_jobs: int = 10_000
    rebalance_quiet: float = 2.0
    cost_dispatches: int = 1000
    memory_jobs: int = 10_000
    idle_seconds: float = 20.0
    peer_latency_jobs: int = 200
    peer_throughput_jobs: int = 2000
    tasks_latency_jobs: int = 200
    tasks_result_jobs: int = 100
    tasks_throughput_jobs: int = 2000
    tasks_cost_jobs: int = 2000
    tasks_queued_jobs: int = 100_000
    ping_samples: int = 2000
    benchmark_requests: int = 100_000


FULL = Sizes()
SMOKE = Sizes(
    latency_jobs=30,
    latency_warmup=5,
    throughput_jobs=300,
    throughput_inflight=50,
    recovery_jobs=40,
    recovery_runs=1,
    recovery_ttls=(1.0,),
    rebalance_jobs=200,
    rebalance_quiet=0.5,
    cost_dispatches=30,
    memory_jobs=1000,
    idle_seconds=2.0,
    peer_latency_jobs=5,
    peer_throughput_jobs=20,
    tasks_latency_jobs=5,
    tasks_result_jobs=3,
    tasks_throughput_jobs=40,
    tasks_cost_jobs=40,
    tasks_queued_jobs=1000,
    ping_samples=200,
    benchmark_requests=5000,
)


# -- the redis-server of the run -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private redis-server on a free loopback port, no persistence; stopped by its PID."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="redpool-bench-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.dir), "--save", "", "--appendonly", "no"]
        args += ["--logfile", str(self.dir / "redis.log")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.dir / 'redis.log').read_text()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s,
            ):
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer PING within 10 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


# -- statistics ----------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * pct / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "mean_ms": statistics.fmean(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms),
        "min_ms": min(ms),
    }


# -- the Redis floor -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Floor:
    ping_ms: float
    ping_p99_ms: float
    ping_samples: int
    set_ops_per_s: float | None
    set_note: str


async def ping_samples(url: str, n: int) -> list[float]:
    """n PING round trips (seconds) from one redis-py asyncio client, after 200 to warm up."""
    client = aioredis.Redis.from_url(url)
    try:
        for _ in range(200):
            await _ping(client)
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            await _ping(client)
            samples.append(time.perf_counter() - t0)
    finally:
        await client.aclose()
    return samples


async def measure_floor(url: str, sizes: Sizes) -> Floor:
    """Median PING round trip from redis-py asyncio, then redis-benchmark SET if on PATH."""
    samples = await ping_samples(url, sizes.ping_samples)
    client = aioredis.Redis.from_url(url)
    try:
        ops, note = await asyncio.to_thread(_redis_benchmark_set, url, sizes.benchmark_requests)
        await client.flushall()
        await client.config_resetstat()
    finally:
        await client.aclose()
    return Floor(
        ping_ms=statistics.median(samples) * 1000,
        ping_p99_ms=percentile(samples, 99) * 1000,
        ping_samples=len(samples),
        set_ops_per_s=ops,
        set_note=note,
    )


async def _ping(client: aioredis.Redis) -> None:
    await cast(Awaitable[bool], client.ping())


def _redis_benchmark_set(url: str, requests: int) -> tuple[float | None, str]:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None, "n/a (redis-benchmark not on PATH)"
    port = url.rsplit(":", 1)[1].split("/")[0]
    args = [binary, "-h", "127.0.0.1", "-p", port, "-t", "set", "-n", str(requests), "--csv"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False).stdout
    match = re.search(r'^"SET","([0-9.]+)"', out, re.MULTILINE)
    if match is None:
        return None, f"n/a (unexpected redis-benchmark output {out[-200:]!r})"
    return float(match.group(1)), f"redis-benchmark -t set -n {requests} (50 clients)"


# -- result rows ---------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table. ``value`` None means n/a (``note`` says why)."""

    scenario: str
    key: str
    metric: str
    value: float | None
    unit: str
    rtt: float | None = None
    note: str = ""

    def value_text(self) -> str:
        if self.value is None:
            return "n/a"
        if not self.unit and abs(self.value) < 1:  # a fraction
            return f"{self.value:.3f}"
        if self.unit in ("jobs/s", "ops/s", "bytes", "B/job", "KiB") or abs(self.value) >= 1000:
            text = f"{self.value:,.0f}"
        elif abs(self.value) >= 100:
            text = f"{self.value:.0f}"
        elif abs(self.value) >= 10:
            text = f"{self.value:.1f}"
        else:
            text = f"{self.value:.2f}"
        return f"{text} {self.unit}".rstrip()


@dataclass
class Result:
    """What a scenario hands back: table rows, details for the JSON, problems it saw."""

    name: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def row(self, key: str) -> Row | None:
        return next((r for r in self.rows if r.key == key), None)


# -- the context every scenario gets -------------------------------------------------------------


@dataclass
class Context:
    server: RedisServer
    floor: Floor
    sizes: Sizes
    smoke: bool
    workdir: Path

    def url(self, db: int = 0) -> str:
        return self.server.url(db)

    def rtt(self, ms: float) -> float:
        """A time in ms, in units of the median PING round trip."""
        return ms / self.floor.ping_ms

    def timing(
        self, scenario: str, key: str, metric: str, ms: float, note: str = "", unit: str = "ms"
    ) -> Row:
        value = ms / 1000 if unit == "s" else ms
        return Row(scenario, key, metric, value, unit, self.rtt(ms), note)

    def client(self, db: int = 0) -> aioredis.Redis:
        return aioredis.Redis.from_url(self.url(db))


async def flushall(ctx: Context) -> None:
    client = ctx.client()
    try:
        await client.flushall()
    finally:
        await client.aclose()


# -- Redis INFO helpers --------------------------------------------------------------------------


async def command_calls(client: aioredis.Redis) -> Counter[str]:
    """``INFO commandstats`` calls by command (commands run inside scripts included); the INFO
    calls of the harness itself are left out."""
    return calls_of(cast(dict[str, dict[str, int]], await client.info("commandstats")))


def calls_of(commandstats: dict[str, dict[str, int]]) -> Counter[str]:
    """Calls by command of an ``INFO commandstats`` reply, without INFO itself."""
    out: Counter[str] = Counter()
    for name, fields in commandstats.items():
        command = name.removeprefix("cmdstat_")
        if command != "info":
            out[command] = int(fields["calls"])
    return out


def delta(after: Counter[str], before: Counter[str]) -> Counter[str]:
    out = Counter({k: after[k] - before.get(k, 0) for k in after})
    return Counter({k: v for k, v in out.items() if v})


def per(counts: Counter[str], n: float) -> dict[str, float]:
    """Counts divided by n, biggest first."""
    return {k: round(v / n, 4) for k, v in counts.most_common()}


async def used_memory(client: aioredis.Redis) -> int:
    info = cast(dict[str, Any], await client.info("memory"))
    return int(info["used_memory"])


def rss_kib(pid: int) -> int | None:
    """VmRSS of a process in KiB, from /proc/<pid>/status."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- member processes ----------------------------------------------------------------------------


class MemberError(RuntimeError):
    pass


class Member:
    """A redpool node in its own OS process (``python -m bench.member``), driven over stdin."""

    def __init__(self, label: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.label = label
        self.proc = proc
        self.log = log
        self.node_id = ""

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        try:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            raise MemberError(f"{self.label}: no answer within {timeout} s") from None
        if not raw:
            raise MemberError(f"{self.label} exited: {self.log_tail()}")
        return raw.decode().strip()

    async def ready(self, timeout: float = 30) -> None:
        line = await self._line(timeout)
        if not line.startswith("ready "):
            raise MemberError(f"{self.label}: expected ready, got {line!r}")
        self.node_id = line.split()[1]

    async def call(self, command: str, timeout: float = 60) -> str:
        """Send one command; return what follows ``ok``, raise on ``error``."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{command}\n".encode())
        await self.proc.stdin.drain()
        line = await self._line(timeout)
        if not line.startswith("ok"):
            raise MemberError(f"{self.label} {command}: {line}")
        return line[2:].strip()

    def alive(self) -> bool:
        return self.proc.returncode is None

    def kill(self) -> None:
        """kill -9 by PID."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    async def stop(self, timeout: float = 15) -> None:
        """SIGTERM (the member closes its node), then SIGKILL if it does not exit in time."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except asyncio.TimeoutError:
                self.kill()
                await self.proc.wait()

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])


class Members:
    """The member processes of one scenario; every one is stopped (by PID) on exit."""

    def __init__(self, ctx: Context, pool: str) -> None:
        self.ctx = ctx
        self.pool = pool
        self.all: list[Member] = []

    async def spawn(
        self,
        count: int,
        *,
        workers: int = 1,
        ttl: float | None = None,
        events: Path | None = None,
        prefix: str = "p",
        command: Sequence[str] | None = None,
    ) -> list[Member]:
        """``count`` processes of ``bench.member`` (``workers`` pool workers each), or of
        ``command`` (a module and its options after URL POOL --label) when given."""
        start = len(self.all)
        new = [
            await self._spawn(f"{prefix}{start + i}", workers, ttl, events, command)
            for i in range(count)
        ]
        await asyncio.gather(*(m.ready() for m in new))
        self.all += new
        return new

    async def _spawn(
        self,
        label: str,
        workers: int,
        ttl: float | None,
        events: Path | None,
        command: Sequence[str] | None,
    ) -> Member:
        module, *options = command or ["bench.member", "--workers", str(workers)]
        args = ["-m", module, self.ctx.url(), self.pool, "--label", label, *options]
        if ttl is not None:
            args += ["--ttl", str(ttl)]
        if events is not None:
            args += ["--events", str(events)]
        log = self.ctx.workdir / f"{self.pool}-{label}.log"
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                PYTHON,
                *args,
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        return Member(label, proc, log)

    async def stop_all(self) -> None:
        await asyncio.gather(*(m.stop() for m in self.all))

    def warnings(self) -> list[str]:
        """Warning and error lines the members logged (redpool logs to their stderr)."""
        out = []
        for m in self.all:
            with contextlib.suppress(OSError):
                for line in m.log.read_text(errors="replace").splitlines():
                    low = line.lower()
                    if "warning" in low or "error" in low or "traceback" in low:
                        out.append(f"{m.label}: {line.strip()[:300]}")
        return out

    async def __aenter__(self) -> Members:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop_all()


@contextlib.asynccontextmanager
async def client_node(
    ctx: Context, pool: str, client: aioredis.Redis | None = None, **options: Any
) -> AsyncIterator[redpool.Node]:
    """A client-only node in this (the harness) process; closed on exit."""
    options.setdefault("max_queued_jobs", 100_000)
    options.setdefault("worker_shutdown_ttl", 30.0)
    node = await redpool.add_node(pool, client or ctx.url(), client_only=True, **options)
    try:
        yield node
    finally:
        if not node.is_closed():
            await node.close()


async def shutdown_pool(node: redpool.Node, result: Result, timeout: float = 40) -> float | None:
    """``node.shutdown()``, timed; a hang or an error is recorded as a problem."""
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(node.shutdown(), timeout)
    except asyncio.TimeoutError:
        result.problems.append(f"shutdown() of pool {node.pool_name!r} hung for > {timeout} s")
        return None
    except redpool.PoolError as exc:
        result.problems.append(f"shutdown() of pool {node.pool_name!r} raised {exc!r}")
        return None
    elapsed = time.perf_counter() - t0
    if elapsed > 5:
        result.problems.append(f"shutdown() of pool {node.pool_name!r} took {elapsed:.1f} s")
    return elapsed


async def bounded(
    calls: Iterable[Callable[[], Awaitable[T]]], limit: int
) -> list[T | BaseException]:
    """Run the calls with at most ``limit`` in flight; exceptions are returned, not raised."""
    sem = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[T]]) -> T | BaseException:
        async with sem:
            try:
                return await call()
            except Exception as exc:
                return exc

    return list(await asyncio.gather(*(one(c) for c in calls)))


async def dispatch_many(node: redpool.Node, keys: Sequence[str], limit: int) -> list[str]:
    """Dispatch every key with ``limit`` in flight; return a description of each failure."""
    results = await bounded([_dispatcher(node, k) for k in keys], limit)
    return [f"{k}: {r!r}" for k, r in zip(keys, results, strict=True) if r is not None]


def _dispatcher(node: redpool.Node, key: str) -> Callable[[], Awaitable[None]]:
    return lambda: node.dispatch_job(key)


def error_summary(errors: Sequence[str], limit: int = 3) -> str:
    head = "; ".join(errors[:limit])
    return f"{len(errors)} failed ({head}{'; ...' if len(errors) > limit else ''})"


# -- member event files --------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    ns: int  # time.monotonic_ns() of the member (CLOCK_MONOTONIC, shared by the machine)
    worker: str  # "<member label>.<worker index>"
    kind: str  # start | stop
    key: str


class EventReader:
    """Reads the lines members append to an event file, from where it left off. Lines appear in
    causal order: every append is one O_APPEND write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._rest = b""

    def read(self) -> list[Event]:
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        data = self._rest + data
        lines = data.split(b"\n")
        self._rest = lines.pop()
        out = []
        for line in lines:
            ns, worker, kind, key = line.decode().split(" ", 3)
            out.append(Event(int(ns), worker, kind, key))
        return out


class Ownership:
    """Who runs which key, replayed from member events. A start of a key that still runs on
    another live worker is an overlap: the singleton guarantee broken."""

    def __init__(self) -> None:
        self.owner: dict[str, str] = {}
        self.overlaps: list[str] = []
        self.last_ns = 0
        self.events = 0

    def apply(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.events += 1
            self.last_ns = max(self.last_ns, ev.ns)
            current = self.owner.get(ev.key)
            if ev.kind == "start":
                if current is not None and current != ev.worker:
                    self.overlaps.append(f"{ev.key} started on {ev.worker} while on {current}")
                self.owner[ev.key] = ev.worker
            elif ev.kind == "stop" and current == ev.worker:
                del self.owner[ev.key]

    def drop(self, label: str) -> set[str]:
        """Forget the jobs of a killed member: they run nowhere now."""
        gone = {k for k, w in self.owner.items() if w.split(".")[0] == label}
        for key in gone:
            del self.owner[key]
        return gone

    def by_worker(self) -> Counter[str]:
        return Counter(self.owner.values())


# -- the machine ---------------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def machine(redis_version: str) -> dict[str, Any]:
    """What the numbers were measured on."""
    from importlib.metadata import PackageNotFoundError, version

    def ver(dist: str) -> str:
        try:
            return version(dist)
        except PackageNotFoundError:
            return "not installed"

    digest = hashlib.sha256()
    for path in sorted([*(ROOT / "src" / "redpool").glob("*.py"), *(ROOT / "lua").glob("*.lua")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis_server": redis_version,
        "redis_py": ver("redis"),
        "hiredis": ver("hiredis"),
        "redpool": ver("redpool"),
        "redpool_source_sha256": digest.hexdigest()[:16],
    }


# -- output --------------------------------------------------------------------------------------


def markdown_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(header)]

    def fmt(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(header), rule, *(fmt(row) for row in lines)])


def results_table(rows: Sequence[Row]) -> str:
    lines = [
        [
            r.scenario,
            r.metric,
            r.value_text() if r.value is not None else (r.note or "n/a"),
            "" if r.rtt is None else f"{r.rtt:,.1f}",
            r.note if r.value is not None else "",
        ]
        for r in rows
    ]
    return markdown_table(["scenario", "metric", "value", "x PING RTT", "notes"], lines)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically (``*.tmp`` then rename) so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=_json_default) + "\n")
    tmp.replace(path)


def _json_default(obj: object) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")

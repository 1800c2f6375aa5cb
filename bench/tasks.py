"""Scenario 7: tasks. The same trivial task (it appends ``<id> <time.monotonic()>`` to a list)
on redpool tasks (2 task-worker processes, ``node.add_task_worker(concurrency=10)``, submits
from a client-only node in this process) and on the peers of bench/task_peers.py, each with 2
worker processes, on the run's redis-server. The records go to a redis-server of this
scenario's own, so commandstats of the run's server count only the queue's commands.

Measured: submit→start p50/p99 (sequential), submit→result p50 (sequential, where there is a
result backend), tasks/s (enqueue N, until the last body ran), Redis commands and round trips
per task, Redis memory per queued job (no worker: used_memory delta / N, minus the params),
and the RSS of a redpool node holding 100,000 queued jobs: the submitting node (it keeps the
handles) and a worker node joined to the pool while it works through them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, cast

import msgpack
import redis.asyncio as aioredis

from .common import (
    Context,
    Member,
    Members,
    RedisServer,
    Result,
    Row,
    client_node,
    command_calls,
    cpu_seconds,
    delta,
    per,
    rss_kib,
    shutdown_pool,
    summary_ms,
    used_memory,
)
from .cost import counting_client
from .peers.record import RECORDS
from .task_peers import PEERS, Sizes, TaskPeer, run_peer

NAME = "tasks"
WORKER = ["bench.task_member", "--concurrency", "10"]
SUBMITTER = ["bench.task_member", "--concurrency", "0"]
DRAIN_S = 180.0  # how long the worker node works through the queued jobs, at most
SETTLE = 0.5  # after the last body ran, for its report (task_finish) to be counted too


async def run(ctx: Context) -> Result:
    result = Result(NAME)
    records_server = RedisServer()
    records_server.start()
    try:
        os.environ["BENCH_RECORD_URL"] = records_server.url()
        records = aioredis.Redis.from_url(records_server.url())
        try:
            await _redpool(ctx, records, result)
            await _flush(ctx, records)
            await _backlog(ctx, records, result)
            await _flush(ctx, records)
        finally:
            await records.aclose()
        await asyncio.to_thread(_peers, ctx, records_server.url(), result)
    finally:
        records_server.stop()
    return result


async def _flush(ctx: Context, records: aioredis.Redis) -> None:
    client = ctx.client()
    try:
        await client.flushall()
    finally:
        await client.aclose()
    await records.delete(RECORDS)


# -- redpool: latency, results, throughput, commands and round trips ---------------------------


async def _redpool(ctx: Context, records: aioredis.Redis, result: Result) -> None:
    pool = f"tasks-{uuid.uuid4().hex[:6]}"
    stats = ctx.client()
    counted, sent = counting_client(ctx.url())
    sizes = ctx.sizes
    async with Members(ctx, pool) as members, client_node(ctx, pool, counted) as node:
        workers = await members.spawn(2, command=WORKER)

        async def submit(i: int) -> Any:
            return await node.submit("bench.trivial", i)

        await asyncio.gather(*(submit(-1 - i) for i in range(20)))
        await _wait_records(records, 20)
        await records.delete(RECORDS)
        await asyncio.sleep(SETTLE)

        assert ctx.server.proc is not None
        cost = _Cost(stats, sent, workers, ctx.server.proc.pid)
        await cost.mark()
        latency = await _latency(sizes.tasks_latency_jobs, submit, records)
        await asyncio.sleep(SETTLE)
        seq = await cost.per_task(sizes.tasks_latency_jobs)

        async def with_result(i: int) -> None:
            await (await submit(i)).result(timeout=30)

        samples = []
        for i in range(sizes.tasks_result_jobs):
            t0 = time.monotonic()
            await with_result(200_000 + i)
            samples.append(time.monotonic() - t0)
        result_latency = summary_ms(samples)

        n = sizes.tasks_throughput_jobs
        await records.delete(RECORDS)
        await cost.mark()
        t0 = time.monotonic()
        await node.submit_many([("bench.trivial", 100_000 + i) for i in range(n)])
        submit_s = time.monotonic() - t0
        await _wait_records(records, n, 300)
        ends = [float(raw.split()[1]) for raw in await records.lrange(RECORDS, 0, -1)]
        await asyncio.sleep(SETTLE)
        batched = await cost.per_task(n)
        await shutdown_pool(node, result)
        result.problems += members.warnings()
    await counted.aclose()
    await stats.aclose()

    tput = {"jobs": n, "enqueue_s": submit_s, "elapsed_s": max(ends) - t0}
    tput["jobs_per_s"] = n / tput["elapsed_s"]
    result.data["redpool"] = {
        "latency": latency,
        "result": result_latency,
        "throughput": tput,
        "sequential": seq,
        "batched": batched,
        "note": "2 task-worker processes, concurrency 10 each; submits from a client-only node",
    }
    note = f"{latency['n']} sequential submit() calls, 2 worker procs"
    for pct in ("p50", "p99"):
        result.rows.append(
            ctx.timing(
                NAME,
                f"redpool_start_{pct}",
                f"redpool submit→start {pct}",
                latency[f"{pct}_ms"],
                note,
            )
        )
    result.rows.append(
        ctx.timing(
            NAME,
            "redpool_result_p50",
            "redpool submit→result p50",
            result_latency["p50_ms"],
            f"{result_latency['n']} sequential submit() + result()",
        )
    )
    result.rows.append(
        Row(
            NAME,
            "redpool_tasks_per_s",
            "redpool tasks/s",
            tput["jobs_per_s"],
            "tasks/s",
            None,
            f"{n:,} tasks by submit_many (500 per call); submitting took {submit_s:.2f} s",
        )
    )
    cpu = batched["cpu_us_per_task"]
    result.rows.append(
        Row(
            NAME,
            "redpool_cpu_per_task",
            "redpool CPU per task (submit_many run)",
            sum(cpu.values()),
            "µs",
            None,
            ", ".join(f"{k} {v:,.0f}" for k, v in cpu.items()),
        )
    )
    for label, data, key in (("batched", batched, "batched"), ("sequential", seq, "seq")):
        result.rows.append(
            Row(
                NAME,
                f"redpool_commands_{key}",
                f"redpool Redis commands per task ({label})",
                data["commands"],
                "cmds",
                None,
                ", ".join(f"{k} {v:.2f}" for k, v in list(data["by_command"].items())[:6]),
            )
        )
        result.rows.append(
            Row(
                NAME,
                f"redpool_round_trips_{key}",
                f"redpool round trips per task ({label})",
                data["round_trips"],
                "RTs",
                None,
                ", ".join(f"{k} {v:.2f}" for k, v in list(data["trips_by_command"].items())[:4]),
            )
        )


class _Cost:
    """Redis commands (commandstats, script internals included) and the round trips sent by
    the submitting node and by the worker processes, between ``mark()`` and ``per_task()``."""

    def __init__(
        self, stats: aioredis.Redis, sent: Counter[str], workers: list[Member], redis_pid: int
    ) -> None:
        self.stats, self.sent, self.workers = stats, sent, workers
        self.pids = {"redis-server": redis_pid} | {f"worker {m.label}": m.pid for m in workers}
        self.calls0: Counter[str] = Counter()
        self.trips0: Counter[str] = Counter()
        self.cpu0: dict[str, float] = {}

    def _cpu(self) -> dict[str, float]:
        out = {name: cpu_seconds(pid) or 0.0 for name, pid in self.pids.items()}
        return out | {"submitter (this process)": time.process_time()}

    async def _trips(self) -> Counter[str]:
        out = Counter(self.sent)
        for member in self.workers:
            out.update(Counter(cast(dict[str, int], json.loads(await member.call("trips")))))
        return out

    async def mark(self) -> None:
        self.calls0, self.trips0 = await command_calls(self.stats), await self._trips()
        self.cpu0 = self._cpu()

    async def per_task(self, n: int) -> dict[str, Any]:
        cpu = {k: v - self.cpu0[k] for k, v in self._cpu().items()}
        calls = delta(await command_calls(self.stats), self.calls0)
        trips = delta(await self._trips(), self.trips0)
        return {
            "cpu_us_per_task": {k: round(v * 1e6 / n, 1) for k, v in cpu.items()},
            "tasks": n,
            "commands": sum(calls.values()) / n,
            "by_command": per(calls, n),
            "round_trips": sum(trips.values()) / n,
            "trips_by_command": per(trips, n),
            "note": "submitting node + both worker processes; background beats included",
        }


async def _latency(
    n: int, submit: Callable[[int], Awaitable[Any]], records: aioredis.Redis
) -> dict[str, float]:
    """As the peers': submit one, wait until its body ran, pause up to 10 ms, repeat."""
    samples = []
    for i in range(n):
        t0 = time.monotonic()
        await submit(i)
        while True:
            item = await cast(Awaitable[Any], records.blpop([RECORDS], timeout=30))
            if item is None:
                raise RuntimeError(f"task {i} did not start within 30 s")
            job_id, started = item[1].decode().split()
            if int(job_id) == i:
                break
        samples.append(float(started) - t0)
        await asyncio.sleep(random.uniform(0, 0.01))
    return summary_ms(samples)


async def _wait_records(records: aioredis.Redis, n: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (done := await cast(Awaitable[int], records.llen(RECORDS))) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done} of {n} tasks ran within {timeout:.0f} s")
        await asyncio.sleep(0.02)


# -- redpool: 100,000 queued jobs: Redis memory, and the RSS of the nodes -----------------------


async def _backlog(ctx: Context, records: aioredis.Redis, result: Result) -> None:
    n = ctx.sizes.tasks_queued_jobs
    pool = f"tasks-queued-{uuid.uuid4().hex[:6]}"
    stats = ctx.client()
    params = sum(len(msgpack.packb(i)) for i in range(n)) / n
    async with Members(ctx, pool) as members:
        (submitter,) = await members.spawn(1, command=SUBMITTER, prefix="s")
        await submitter.call("submit 1")  # the tasks layer's keys exist before the baseline
        mem0, rss_idle = await used_memory(stats), rss_kib(submitter.pid)
        submit_s = float(await submitter.call(f"submit {n}", timeout=600))
        mem1, rss_submitter = await used_memory(stats), rss_kib(submitter.pid)
        keys = await _key_sizes(stats, pool)
        t0 = time.monotonic()
        (worker,) = await members.spawn(1, command=WORKER, prefix="w")
        rss_worker_idle = rss_kib(worker.pid)
        peak = rss_worker_idle or 0
        deadline = time.monotonic() + DRAIN_S
        while (ran := await cast(Awaitable[int], records.llen(RECORDS))) < n + 1:
            peak = max(peak, rss_kib(worker.pid) or 0)
            if time.monotonic() > deadline:
                break  # enough to see the RSS; the rest is shut down with the pool
            await asyncio.sleep(0.25)
        drain_s = time.monotonic() - t0
        async with client_node(ctx, pool) as node:
            await shutdown_pool(node, result, timeout=60)
        result.problems += members.warnings()
    await stats.aclose()

    per_job = (mem1 - mem0) / n - params
    result.data["queued"] = {
        "jobs": n,
        "params_bytes_mean": params,
        "used_memory_before": mem0,
        "used_memory_after": mem1,
        "bytes_per_job_minus_params": per_job,
        "memory_usage_by_key_kind": keys,
        "submit_s": submit_s,
        "submitter_rss_kib_idle": rss_idle,
        "submitter_rss_kib_holding": rss_submitter,
        "worker_rss_kib_idle": rss_worker_idle,
        "worker_rss_kib_peak": peak,
        "drain_s": drain_s,
        "drained": ran,
    }
    top = ", ".join(f"{k} {v / n:.0f}" for k, v in list(keys.items())[:5])
    result.rows.append(
        Row(
            NAME,
            "redpool_bytes_per_queued",
            "redpool Redis memory per queued job",
            per_job,
            "B/job",
            None,
            f"{n:,} queued, no worker; minus params ({params:.1f} B); per job: {top}",
        )
    )
    if rss_submitter is not None and rss_idle is not None:
        result.rows.append(
            Row(
                NAME,
                "redpool_rss_submitter",
                f"RSS of the node that submitted {n:,} queued jobs",
                rss_submitter / 1024,
                "MiB",
                None,
                f"it holds the {n:,} handles; idle {rss_idle / 1024:.1f} MiB",
            )
        )
    result.rows.append(
        Row(
            NAME,
            "redpool_rss_worker",
            f"RSS of a worker node working through {n:,} queued jobs",
            peak / 1024,
            "MiB",
            None,
            f"peak; joined with {n:,} queued (concurrency 10); idle "
            f"{(rss_worker_idle or 0) / 1024:.1f} MiB; ran {ran:,} in {drain_s:.0f} s",
        )
    )


async def _key_sizes(client: aioredis.Redis, pool: str) -> dict[str, float]:
    """MEMORY USAGE of the pool's keys by kind (tdata:<key> and the like: a sample of 50 per
    kind, scaled by how many there are)."""
    names: dict[str, list[bytes]] = {}
    async for raw in client.scan_iter(match=f"redpool:{{{pool}}}:*", count=1000):
        parts = raw.decode().split("}:", 1)[1].split(":")  # t:jobs, t:data:<key>, leases, ...
        head = 2 if parts[0] == "t" else 1
        kind = ":".join(parts[:head]) + (":*" if len(parts) > head else "")
        names.setdefault(kind, []).append(raw)
    out: dict[str, float] = {}
    for kind, keys in names.items():
        sample = keys[:50]
        sizes = [int(await client.memory_usage(k, samples=0) or 0) for k in sample]
        out[kind] = sum(sizes) / len(sample) * len(keys)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


# -- the peers ---------------------------------------------------------------------------------


def _slug(peer: TaskPeer) -> str:
    return re.sub(r"[^a-z0-9]+", "_", peer.name.lower()).strip("_")


def _peers(ctx: Context, record_url: str, result: Result) -> None:
    sizes = Sizes(
        ctx.sizes.tasks_latency_jobs,
        ctx.sizes.tasks_result_jobs,
        ctx.sizes.tasks_throughput_jobs,
        min(ctx.sizes.tasks_queued_jobs, 5000),
    )
    for peer in PEERS:
        slug = _slug(peer)
        t0 = time.monotonic()
        try:
            data = run_peer(peer, ctx.url(peer.db), record_url, sizes, ctx.workdir)
        except Exception as exc:
            reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            result.data[peer.name] = {"error": reason}
            result.rows.append(
                Row(NAME, f"{slug}_tasks_per_s", f"{peer.name} tasks/s", None, "tasks/s", None,
                    f"n/a ({reason})")
            )  # fmt: skip
            continue
        data["seconds"] = time.monotonic() - t0
        result.data[peer.name] = data
        lat = data["latency"]
        for pct in ("p50", "p99"):
            result.rows.append(
                ctx.timing(NAME, f"{slug}_start_{pct}", f"{peer.name} submit→start {pct}",
                           lat[f"{pct}_ms"], f"{peer.note}; {lat['n']} sequential")
            )  # fmt: skip
        if "result" in data:
            result.rows.append(
                ctx.timing(NAME, f"{slug}_result_p50", f"{peer.name} submit→result p50",
                           data["result"]["p50_ms"], f"{data['result']['n']} sequential")
            )  # fmt: skip
        tput = data["throughput"]
        top = ", ".join(f"{k} {v:.2f}" for k, v in list(data["commands_by_command"].items())[:4])
        result.rows += [
            Row(NAME, f"{slug}_tasks_per_s", f"{peer.name} tasks/s", tput["jobs_per_s"],
                "tasks/s", None, f"{tput['jobs']:,} jobs; enqueue took {tput['enqueue_s']:.2f} s"),
            Row(NAME, f"{slug}_commands", f"{peer.name} Redis commands per task",
                data["commands_per_job"], "cmds", None, top),
            Row(NAME, f"{slug}_bytes_per_queued", f"{peer.name} Redis memory per queued job",
                data["memory"]["bytes_per_job"], "B/job", None,
                f"{data['memory']['jobs']:,} queued, no worker"),
        ]  # fmt: skip
    with contextlib.suppress(Exception):
        result.data["versions"] = {
            p.name: result.data[p.name].get("version") for p in PEERS if p.name in result.data
        }

"""Scenario 5: cost. Redis commands per dispatch (INFO commandstats, every command including
those run inside scripts) and round trips made by the dispatching process; Redis memory per
running job (empty payload) and the RSS of a node process running them; commands per second of
an idle worker."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis

from .common import (
    Context,
    Members,
    Result,
    Row,
    client_node,
    command_calls,
    delta,
    dispatch_many,
    error_summary,
    per,
    rss_kib,
    shutdown_pool,
    used_memory,
)

NAME = "cost"


def counting_client(url: str) -> tuple[aioredis.Redis, Counter[str]]:
    """A client that counts what it sends: one send is one round trip (a pipeline is one)."""
    sent: Counter[str] = Counter()
    scripts = _script_names()

    class CountingConnection(aioredis.Connection):
        async def send_packed_command(
            self, command: bytes | str | Iterable[bytes], check_health: bool = True
        ) -> None:
            if not isinstance(command, (bytes, str)):
                command = list(command)
            sent[_command_name(command, scripts)] += 1
            await super().send_packed_command(command, check_health)

    pool = aioredis.ConnectionPool.from_url(url, connection_class=CountingConnection)
    return aioredis.Redis(connection_pool=pool), sent


def _command_name(command: bytes | str | list[bytes], scripts: dict[str, str]) -> str:
    if isinstance(command, str):
        head = command.encode()
    elif isinstance(command, bytes):
        head = command
    else:
        head = b"".join(command[:3])
    parts = head.split(b"\r\n")  # *<n>, $<len>, NAME, $<len>, ARG1, ...
    name = parts[2].decode(errors="replace").upper() if len(parts) > 2 else "?"
    if name == "EVALSHA" and len(parts) > 4:
        sha = parts[4].decode(errors="replace")
        return f"EVALSHA {scripts.get(sha, sha[:8])}"
    return name


def _script_names() -> dict[str, str]:
    """sha1 -> redpool script name, to label EVALSHA calls (best effort: a private API)."""
    try:
        from redpool._scripts import sources
        from redpool.tasks._scripts import _sources as task_sources

        every = {**sources(), **task_sources()}
        return {hashlib.sha1(src.encode()).hexdigest(): n for n, src in every.items()}
    except Exception:
        return {}


async def run(ctx: Context) -> Result:
    result = Result(NAME)
    await _per_dispatch(ctx, result)
    await _memory(ctx, result)
    await _idle(ctx, result)
    return result


async def _per_dispatch(ctx: Context, result: Result) -> None:
    n = ctx.sizes.cost_dispatches
    pool = f"cost-{uuid.uuid4().hex[:6]}"
    stats = ctx.client()
    counted, sent = counting_client(ctx.url())
    async with Members(ctx, pool) as members, client_node(ctx, pool, counted) as node:
        await members.spawn(2)
        for i in range(20):
            await node.dispatch_job(f"warm-{i}")
        calls0 = await command_calls(stats)
        sent0 = Counter(sent)
        t0 = time.perf_counter()
        for i in range(n):
            await node.dispatch_job(f"job-{i}")
        elapsed = time.perf_counter() - t0
        calls = delta(await command_calls(stats), calls0)
        trips = delta(Counter(sent), sent0)
        await shutdown_pool(node, result)
        result.problems += members.warnings()
    await counted.aclose()
    await stats.aclose()

    cmds = sum(calls.values()) / n
    rts = sum(trips.values()) / n
    top = ", ".join(f"{k} {v:.2f}" for k, v in list(per(calls, n).items())[:6])
    trip_text = ", ".join(f"{k} {v:.2f}" for k, v in per(trips, n).items())
    result.data["per_dispatch"] = {
        "dispatches": n,
        "elapsed_s": elapsed,
        "redis_commands": cmds,
        "redis_commands_by_command": per(calls, n),
        "dispatcher_round_trips": rts,
        "dispatcher_round_trips_by_command": per(trips, n),
        "note": "sequential dispatches, 2 worker processes; background beats included",
    }
    result.rows.append(
        Row(NAME, "commands_per_dispatch", "Redis commands per dispatch", cmds, "cmds", None, top)
    )
    result.rows.append(
        Row(
            NAME,
            "round_trips_per_dispatch",
            "round trips, dispatching process",
            rts,
            "RTs",
            None,
            trip_text,
        )
    )


async def _memory(ctx: Context, result: Result) -> None:
    n = ctx.sizes.memory_jobs
    pool = f"memory-{uuid.uuid4().hex[:6]}"
    stats = ctx.client()
    async with Members(ctx, pool) as members, client_node(ctx, pool) as node:
        (member,) = await members.spawn(1)
        await node.dispatch_job("warm")
        await asyncio.sleep(1.0)
        mem0, rss0 = await used_memory(stats), rss_kib(member.pid)
        errors = await dispatch_many(node, [f"job-{i:05d}" for i in range(n)], 200)
        # Inboxes are trimmed by their node's heartbeat (every worker_ttl / 3 = 3.3 s).
        await asyncio.sleep(4.5 if not ctx.smoke else 1.0)
        mem1, rss1 = await used_memory(stats), rss_kib(member.pid)
        keys = await _key_sizes(stats, pool)
        running = int(await member.call("count"))
        await shutdown_pool(node, result, timeout=60)
        result.problems += members.warnings()
    await stats.aclose()

    if errors:
        result.problems.append(f"memory: dispatch_job {error_summary(errors)}")
    per_job = (mem1 - mem0) / n
    result.data["memory"] = {
        "jobs": n,
        "running_in_member": running,
        "payload_bytes": 0,
        "used_memory_before": mem0,
        "used_memory_after": mem1,
        "bytes_per_job": per_job,
        "memory_usage_by_key": keys,
        "member_rss_kib_before": rss0,
        "member_rss_kib_after": rss1,
    }
    note = f"{n:,} running jobs, empty payload, INFO used_memory delta"
    result.rows.append(
        Row(NAME, "bytes_per_job", "Redis memory per running job", per_job, "B/job", None, note)
    )
    if rss1 is not None and rss0 is not None:
        result.data["memory"]["member_rss_bytes_per_job"] = (rss1 - rss0) * 1024 / n
        result.rows.append(
            Row(
                NAME,
                "rss_mib",
                f"RSS of a node process running {n:,} jobs",
                rss1 / 1024,
                "MiB",
                None,
                f"idle {rss0 / 1024:.1f} MiB; +{(rss1 - rss0) * 1024 / n:,.0f} B/job",
            )
        )


async def _key_sizes(client: aioredis.Redis, pool: str) -> dict[str, Any]:
    """MEMORY USAGE of each key of the pool, grouped by what it is."""
    out: Counter[str] = Counter()
    prefix = f"redpool:{{{pool}}}:"
    async for raw in client.scan_iter(match=f"redpool:{{{pool}}}:*", count=500):
        name = raw.decode()[len(prefix) :]
        kind = name.split(":")[0] if ":" in name else name
        size = await client.memory_usage(raw, samples=0)
        out[kind] += int(size or 0)
    return dict(out.most_common())


async def _idle(ctx: Context, result: Result) -> None:
    seconds = ctx.sizes.idle_seconds
    pool = f"idle-{uuid.uuid4().hex[:6]}"
    stats = ctx.client()
    async with Members(ctx, pool) as members:
        await members.spawn(1)  # one node, one worker, no jobs, default worker_ttl (10 s)
        await asyncio.sleep(2.0)
        calls0 = await command_calls(stats)
        t0 = time.perf_counter()
        await asyncio.sleep(seconds)
        calls = delta(await command_calls(stats), calls0)
        elapsed = time.perf_counter() - t0
        await members.stop_all()
        result.problems += members.warnings()
    await stats.aclose()

    rate = sum(calls.values()) / elapsed
    result.data["idle_worker"] = {
        "seconds": elapsed,
        "worker_ttl": 10.0,
        "commands_per_s": rate,
        "commands_per_s_by_command": per(calls, elapsed),
    }
    top = ", ".join(f"{k} {v:.2f}" for k, v in list(per(calls, elapsed).items())[:5])
    result.rows.append(
        Row(
            NAME,
            "idle_commands_per_s",
            "idle worker (1 node, 1 worker, ttl 10 s)",
            rate,
            "cmds/s",
            None,
            f"over {elapsed:.0f} s: {top}",
        )
    )

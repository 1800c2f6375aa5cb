"""Run the redpool benchmarks.

    python -m bench                     # the full run (make bench): bench/results/latest.json
    python -m bench --smoke             # tiny sizes, seconds not minutes; JSON in a temp dir
    python -m bench --only dispatch,cost --out /tmp/x.json

Each run starts its own redis-server on a free loopback port (stopped by PID at the end),
measures the Redis floor first, then runs the scenarios in order. A scenario that fails or
hangs is reported (n/a, with the error) and the run goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog

from . import (
    bounded,
    cost,
    dispatch_latency,
    peer_queues,
    rebalance,
    recovery,
    recurring,
    tasks,
    throughput,
)
from .common import (
    FULL,
    ROOT,
    SMOKE,
    Context,
    Floor,
    RedisServer,
    Result,
    Row,
    flushall,
    machine,
    markdown_table,
    measure_floor,
    ping_samples,
    results_table,
    write_json,
)
from .targets import evaluate

Scenario = Callable[[Context], Awaitable[Result]]

# name -> (run, time limit in seconds for the full sizes)
SCENARIOS: dict[str, tuple[Scenario, float]] = {
    "dispatch": (dispatch_latency.run, 180),
    "throughput": (throughput.run, 300),
    "cost": (cost.run, 300),
    "rebalance": (rebalance.run, 300),
    "bounded": (bounded.run, 300),
    "recovery": (recovery.run, 600),
    "peers": (peer_queues.run, 900),
    "tasks": (tasks.run, 1800),
    "recurring": (recurring.run, 600),
}
DEFAULT_OUT = ROOT / "bench" / "results" / "latest.json"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check it all runs")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(SCENARIOS)}")
    parser.add_argument(
        "--out",
        type=Path,
        help="JSON path (default: bench/results/latest.json for a full run, else a temp file)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (member logs)")
    args = parser.parse_args()
    names = list(SCENARIOS) if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    if args.out is None:
        full_run = not args.smoke and not args.only
        args.out = DEFAULT_OUT if full_run else Path(tempfile.gettempdir()) / "redpool-bench.json"

    # redpool logs through structlog: keep this process's stdout for the table.
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    workdir = Path(tempfile.mkdtemp(prefix="redpool-bench-"))
    server = RedisServer()
    server.start()
    started = time.time()
    try:
        report = asyncio.run(_run(server, names, args.smoke, workdir))
    finally:
        server.stop()
        if args.keep:
            print(f"work dir kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report["meta"]["duration_s"] = round(time.time() - started, 1)
    report["meta"]["json"] = str(args.out)
    write_json(args.out, report)
    print(report["text"])
    print(f"\nJSON: {args.out} ({report['meta']['duration_s']:.0f} s)")
    return 0


async def _run(server: RedisServer, names: list[str], smoke: bool, workdir: Path) -> dict[str, Any]:
    sizes = SMOKE if smoke else FULL
    floor = await measure_floor(server.url(), sizes)
    ctx = Context(server, floor, sizes, smoke, workdir)
    client = ctx.client()
    info = await client.info("server")
    await client.aclose()
    results: dict[str, Result] = {}
    for name in names:
        run, limit = SCENARIOS[name]
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            result = await asyncio.wait_for(run(ctx), limit / (4 if smoke else 1))
        except Exception as exc:
            if isinstance(exc, asyncio.TimeoutError):
                why = f"timed out after {limit / (4 if smoke else 1):.0f} s"
            else:
                why = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            result = Result(name, [Row(name, "error", "scenario failed", None, "", None, why)])
            result.problems.append(f"{name} failed: {why}\n{traceback.format_exc()}")
        result.seconds = time.monotonic() - t0
        results[name] = result
        print(f"[bench] {name} done in {result.seconds:.0f} s", file=sys.stderr, flush=True)
        await flushall(ctx)
    # The machine may be busier now than at the start: measure PING again, for comparison.
    end = statistics.median(await ping_samples(server.url(), sizes.ping_samples)) * 1000
    return _report(ctx, floor, end, str(info["redis_version"]), results)


def _report(
    ctx: Context, floor: Floor, end_ping_ms: float, redis_version: str, results: dict[str, Result]
) -> dict[str, Any]:
    sizes_note = "smoke sizes" if ctx.smoke else f"{ctx.sizes.rebalance_jobs:,} jobs"
    rows = [
        ctx.timing(
            "floor",
            "ping",
            "PING round trip, median (redis-py asyncio)",
            floor.ping_ms,
            f"p99 {floor.ping_p99_ms:.3f} ms, {floor.ping_samples} PINGs; "
            f"{end_ping_ms:.3f} ms at the end of the run",
        ),
        Row(
            "floor",
            "set_ops",
            "redis-benchmark SET",
            floor.set_ops_per_s,
            "ops/s",
            None,
            floor.set_note,
        ),
    ]
    for result in results.values():
        rows += result.rows
    targets = evaluate(results, sizes_note)
    host = machine(redis_version)
    text = "\n".join(
        [
            f"redpool benchmarks{' (SMOKE sizes)' if ctx.smoke else ''}: {host['nproc']} CPUs "
            f"({host['cpu_model']}), Python {host['python']}, Redis {host['redis_server']}, "
            f"redis-py {host['redis_py']}, hiredis {host['hiredis']}",
            "",
            results_table(rows),
            "",
            markdown_table(
                ["target", "goal", "measured", "status"],
                [[t.name, t.target, t.measured, t.status] for t in targets],
            ),
        ]
    )
    problems = {name: r.problems for name, r in results.items() if r.problems}
    if problems:
        text += "\n\nProblems seen:\n" + "\n".join(
            f"- {name}: {p.splitlines()[0]}" for name, ps in problems.items() for p in ps[:10]
        )
    return {
        "meta": {
            "command": "python -m bench " + " ".join(sys.argv[1:]),
            "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"
            ),
            "smoke": ctx.smoke,
            "sizes": ctx.sizes,
            "machine": host,
        },
        "floor": floor,
        "ping_ms_at_end": end_ping_ms,
        "rows": rows,
        "targets": targets,
        "scenarios": {
            name: {"seconds": round(r.seconds, 1), "data": r.data, "problems": r.problems}
            for name, r in results.items()
        },
        "text": text,
    }


if __name__ == "__main__":
    sys.exit(main())

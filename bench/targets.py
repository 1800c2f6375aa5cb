"""The targets of the benchmark issue, checked against the results of a run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .common import Result


@dataclass(frozen=True)
class Target:
    name: str
    target: str
    measured: str
    status: str  # met | missed | n/a


def evaluate(results: dict[str, Result], sizes_note: str) -> list[Target]:
    out: list[Target] = []

    def value(scenario: str, key: str, rtt: bool = False) -> float | None:
        res = results.get(scenario)
        row = res.row(key) if res else None
        if row is None:
            return None
        return row.rtt if rtt else row.value

    def check(
        name: str,
        target: str,
        got: float | None,
        ok: Callable[[float], bool],
        fmt: Callable[[float], str],
    ) -> None:
        if got is None:
            out.append(Target(name, target, "n/a (not measured)", "n/a"))
        else:
            out.append(Target(name, target, fmt(got), "met" if ok(got) else "missed"))

    for pct, limit in (("p50", 4), ("p99", 12)):
        check(
            f"dispatch→started {pct}",
            f"≤ {limit} PING RTTs",
            value("dispatch", pct, rtt=True),
            at_most(limit),
            "{:.1f} RTTs".format,
        )

    ours = value("throughput", "jobs_per_s")
    peers = results.get("peers")
    best = None
    if peers is not None:
        rates = [(r.value, r.metric) for r in peers.rows if r.key.endswith("jobs_per_s")]
        measured = [(v, m) for v, m in rates if v is not None]
        best = max(measured) if measured else None
    if ours is None or best is None:
        out.append(Target("throughput", "≥ 3 x best peer", "n/a (not measured)", "n/a"))
    else:
        ratio = ours / best[0]
        peer = best[1].split()[0]
        text = f"{ours:,.0f} jobs/s = {ratio:.1f} x {peer} ({best[0]:,.0f} jobs/s)"
        out.append(Target("throughput", "≥ 3 x best peer", text, _status(ratio >= 3)))

    rec = results.get("recovery")
    for key, data in sorted((rec.data if rec else {}).items()):
        if not key.startswith("ttl_"):
            continue
        ttl = float(key[4:])
        runs = data["runs"]
        times = [r["recovered_s"] for r in runs]
        ok = all(t is not None and t <= ttl + 1 for t in times)
        shown = ", ".join("never" if t is None else f"{t:.2f}" for t in times)
        out.append(
            Target(
                f"recovery, worker_ttl {ttl:g} s",
                f"max ≤ {ttl + 1:g} s, every run",
                f"runs: {shown} s",
                _status(ok),
            )
        )

    for what in ("add", "remove"):
        check(
            f"rebalance ({what}): keys moved",
            "≤ 1.3 x ideal (1/9)",
            value("rebalance", f"{what}_moved"),
            at_most(1.3 / 9),
            lambda v: f"{v:.3f} = {v * 9:.2f} x ideal",
        )
        check(
            f"rebalance ({what}): settled",
            f"≤ 2 s ({sizes_note})",
            value("rebalance", f"{what}_settled"),
            at_most(2),
            "{:.2f} s".format,
        )

    limits = results["bounded"].data.get("bound_ratio", {}) if "bounded" in results else {}
    for key, what in (("max_mean", "8 workers"), ("join_max_mean", "after a 9th joined")):
        limit = limits.get(key, 1.25)
        check(
            f"bounded loads ({what}): max/mean",
            f"≤ ⌈1.25 x mean⌉ / mean = {limit:.3f}",
            value("bounded", key),
            at_most(limit),
            "{:.3f}".format,
        )
    check(
        "bounded loads (join): keys moved",
        "≤ 1.3 x ideal (1/9)",
        value("bounded", "join_moved"),
        at_most(1.3 / 9),
        lambda v: f"{v:.3f} = {v * 9:.2f} x ideal",
    )

    check(
        "Redis commands per dispatch",
        "≤ 10 (commandstats)",
        value("cost", "commands_per_dispatch"),
        at_most(10),
        "{:.1f}".format,
    )
    check(
        "round trips, dispatching side",
        "≤ 3",
        value("cost", "round_trips_per_dispatch"),
        at_most(3),
        "{:.2f}".format,
    )
    check(
        "idle worker",
        "≤ 2 commands/s",
        value("cost", "idle_commands_per_s"),
        at_most(2),
        "{:.2f} commands/s".format,
    )
    check(
        "Redis memory per job",
        "≤ 300 bytes + payload",
        value("cost", "bytes_per_job"),
        at_most(300),
        "{:.0f} bytes (empty payload)".format,
    )
    out += _tasks(results.get("tasks"))
    return out


def _tasks(res: Result | None) -> list[Target]:
    """Issue 9's targets: redpool tasks against the best peer of the same run."""
    if res is None:
        return []
    out: list[Target] = []

    def rows(suffix: str) -> list[tuple[float, str]]:
        """(value, peer name) of the peers' rows whose key ends with ``suffix``."""
        return [
            (r.value, r.metric.removesuffix(" tasks/s").removesuffix(" submit→start p50"))
            for r in res.rows
            if r.key.endswith(suffix) and not r.key.startswith("redpool") and r.value is not None
        ]

    def mine(key: str) -> float | None:
        row = res.row(key)
        return row.value if row else None

    for key, name, goal, better in (
        ("tasks_per_s", "tasks: tasks/s", "≥ 3 x best peer", max),
        ("start_p50", "tasks: submit→start p50", "≤ 0.5 x best peer's", min),
    ):
        ours, peers = mine(f"redpool_{key}"), rows(f"_{key}")
        if ours is None or not peers:
            out.append(Target(name, goal, "n/a (not measured)", "n/a"))
            continue
        best, peer = better(peers)
        unit = "tasks/s" if key == "tasks_per_s" else "ms"
        text = f"{ours:,.2f} {unit} = {ours / best:.2f} x {peer} ({best:,.2f} {unit})"
        ok = ours >= 3 * best if better is max else ours <= 0.5 * best
        out.append(Target(name, goal, text, _status(ok)))
    checks = [
        ("tasks: round trips per task", "≤ 2, amortised", "redpool_round_trips_batched", 2,
         "{:.2f} (submit_many run)"),
        ("tasks: Redis commands per task", "≤ 20 (light path)", "redpool_commands_batched", 20,
         "{:.1f} (submit_many run, commandstats)"),
        ("tasks: Redis memory per queued job", "≤ 500 B + params", "redpool_bytes_per_queued",
         500, "{:.0f} B + params"),
    ]  # fmt: skip
    for name, goal, key, limit, fmt in checks:
        got = mine(key)
        if got is None:
            out.append(Target(name, goal, "n/a (not measured)", "n/a"))
        else:
            out.append(Target(name, goal, fmt.format(got), _status(got <= limit)))
    rss = [v for v in (mine("redpool_rss_worker"), mine("redpool_rss_submitter")) if v is not None]
    if not rss:
        out.append(Target("tasks: RSS, 100k queued", "< 100 MiB", "n/a (not measured)", "n/a"))
    else:
        text = f"{max(rss):.1f} MiB (the larger of the worker and the submitting node)"
        out.append(Target("tasks: RSS, 100k queued", "< 100 MiB", text, _status(max(rss) < 100)))
    return out


def at_most(limit: float) -> Callable[[float], bool]:
    return lambda v: v <= limit


def _status(ok: bool) -> str:
    return "met" if ok else "missed"

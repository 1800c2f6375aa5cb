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
    return out


def at_most(limit: float) -> Callable[[float], bool]:
    return lambda v: v <= limit


def _status(ok: bool) -> str:
    return "met" if ok else "missed"

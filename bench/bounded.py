"""Scenario: bounded loads. 10,000 keys over 8 workers (4 processes x 2), 30 % of them hot (keys
that plain consistent hashing sends to one worker); then a ninth worker joins. Measures the
max/mean load (plain consistent hashing would give, for comparison), and on the join the
fraction of keys moved (ideal 1/9), the max/mean load after it and the time to settle."""

from __future__ import annotations

import asyncio
import itertools
import math
import uuid
from collections import Counter

import redpool
from redpool._routing import Ring

from .common import (
    Context,
    EventReader,
    Members,
    Ownership,
    Result,
    Row,
    client_node,
    dispatch_many,
    error_summary,
    shutdown_pool,
)
from .rebalance import IDEAL, _change

NAME = "bounded"
HOT_SHARE = 0.3
EPSILON = 0.25  # the default load_epsilon


async def run(ctx: Context) -> Result:
    result = Result(NAME)
    n = ctx.sizes.rebalance_jobs
    pool = f"bounded-{uuid.uuid4().hex[:6]}"
    path = ctx.workdir / f"{pool}.events"
    reader, owners = EventReader(path), Ownership()
    async with Members(ctx, pool) as members, client_node(ctx, pool) as node:
        procs = await members.spawn(4, workers=2, events=path)
        ring = Ring("", {w.id: 0 for w in await node.pool_workers()})
        hot_worker = min(ring.workers)
        hot = (f"hot-{i}" for i in itertools.count())
        keys = list(
            itertools.islice((k for k in hot if ring.route(k) == hot_worker), int(n * HOT_SHARE))
        )
        keys += [f"key-{i:05d}" for i in range(n - len(keys))]
        plain = Counter(ring.route(k) for k in keys)
        errors = await dispatch_many(node, keys, 200)
        if errors:
            result.problems.append(f"bounded: dispatch_job {error_summary(errors)}")
        await asyncio.sleep(1.0)
        owners.apply(reader.read())
        before = await _loads(node)
        added = await _change(ctx, node, reader, owners, lambda: procs[0].call("add"))
        after = await _loads(node)
        result.data |= {"plain": dict(plain), "before": before, "after": after, "add": added}
        result.data["shutdown_s"] = await shutdown_pool(node, result, timeout=90)
        result.problems += members.warnings()

    result.data["bound_ratio"] = {
        "max_mean": math.ceil((1 + EPSILON) * n / 8) / (n / 8),
        "join_max_mean": math.ceil((1 + EPSILON) * n / 9) / (n / 9),
    }
    note = f"{n:,} keys, {HOT_SHARE:.0%} hot; bound {1 + EPSILON:g} x mean, rounded up"
    for key, label, loads in (
        ("plain_max_mean", "plain consistent hashing: max/mean load", plain),
        ("max_mean", "8 workers: max/mean load", before),
        ("join_max_mean", "after a 9th worker joined: max/mean load", after),
    ):
        value = max(loads.values()) / (sum(loads.values()) / len(loads)) if loads else None
        result.rows.append(Row(NAME, key, label, value, "", None, note))
    if added["overlaps"]:
        result.problems.append(f"bounded join: jobs ran twice: {added['overlap_example']}")
    frac = added["moved"] / n
    moved_note = f"{n:,} keys, ideal {IDEAL:.3f}; {frac / IDEAL:.2f}x ideal"
    result.rows.append(
        Row(NAME, "join_moved", "a 9th worker joins: fraction moved", frac, "", None, moved_note)
    )
    settled = added["settled_s"]
    if settled is None:
        result.problems.append(f"bounded join: not settled ({added['running']} of {n} running)")
        result.rows.append(
            Row(NAME, "join_settled", "a 9th worker joins: settled", None, "s", None, "not settled")
        )
    else:
        touched = f"{added['touched']:,} keys stopped/started"
        result.rows.append(
            ctx.timing(
                NAME, "join_settled", "a 9th worker joins: settled", settled * 1000, touched, "s"
            )
        )
    return result


async def _loads(node: redpool.Node) -> dict[str, int]:
    return {w.id: w.job_count for w in await node.pool_workers()}

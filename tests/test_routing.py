"""Consistent-hash routing: stable while membership is unchanged, even, minimal moves."""

from __future__ import annotations

import asyncio
from collections import Counter

from redpool._routing import Ring
from tests.helpers import Recorder


async def test_a_key_lands_on_the_same_worker_while_membership_is_unchanged(make_node):
    node = await make_node()
    handlers = [Recorder(str(i)) for i in range(3)]
    workers = [await node.add_worker(h) for h in handlers]
    keys = [f"key-{i}" for i in range(30)]
    owner: dict[str, str] = {}
    for _ in range(3):
        await asyncio.gather(*(node.dispatch_job(k) for k in keys))
        for worker in workers:
            for job in worker.jobs():
                assert owner.setdefault(job.key, worker.id) == worker.id
        await asyncio.gather(*(node.stop_job(k) for k in keys))
    assert len(owner) == 30


async def test_1000_keys_over_4_workers_are_spread_within_30_percent(make_node):
    node = await make_node(max_queued_jobs=2000)
    workers = [await node.add_worker(Recorder()) for _ in range(4)]
    await asyncio.gather(*(node.dispatch_job(f"job-{i}") for i in range(1000)))
    counts = [len(w.jobs()) for w in workers]
    assert sum(counts) == 1000
    assert all(175 <= c <= 325 for c in counts), counts


def test_adding_a_worker_moves_only_the_keys_it_takes_over():
    before = Ring("1", {f"n{i}.1": 0 for i in range(8)})
    after = Ring("2", {**before.workers, "n8.1": 0})
    keys = [f"k{i}" for i in range(10_000)]
    moved = [k for k in keys if before.route(k) != after.route(k)]
    assert all(after.route(k) == "n8.1" for k in moved)
    assert 0.5 / 9 < len(moved) / len(keys) < 1.3 / 9
    assert Counter(after.route(k) for k in keys)["n8.1"] == len(moved)

"""Workers joining and leaving: only keys whose ring owner changed move, each once per
change, stop() on the old owner before start() on the new one."""

from __future__ import annotations

import asyncio
from collections import Counter

from redpool._routing import Ring
from tests.helpers import eventually
from tests.invariants import check_no_overlap, episodes, running_at_end, runs_exactly_once


async def test_a_worker_joining_and_leaving_repeatedly(make_node, members, events_file):
    steady = await members("--workers", "2")
    churner = await members("--workers", "1")
    client = await make_node(client_only=True, max_queued_jobs=1000)
    keys = [f"job-{i}" for i in range(200)]
    await asyncio.gather(*(client.dispatch_job(k) for k in keys))
    await eventually(lambda: runs_exactly_once(events_file, keys, {}), 10, "settled")
    for command in ["add", "remove"] * 3:
        before_ring = Ring("", {w.id: 0 for w in await client.pool_workers()})
        starts_before = Counter(e.key for e in episodes(events_file, {}))
        await churner.ask(command)
        after_ring = Ring("", {w.id: 0 for w in await client.pool_workers()})
        expected = {k for k in keys if before_ring.route(k) != after_ring.route(k)}
        assert expected, "the ring did not change"

        def settled(
            expected: set[str] = expected, starts_before: Counter[str] = starts_before
        ) -> bool:
            starts = Counter(e.key for e in episodes(events_file, {}))
            moved = {k for k in keys if starts[k] != starts_before[k]}
            return moved == expected and runs_exactly_once(events_file, keys, {})

        await eventually(settled, 10, f"{command} settled")
        starts = Counter(e.key for e in episodes(events_file, {}))
        assert all(starts[k] - starts_before[k] == 1 for k in expected), "a job moved twice"
    check_no_overlap(episodes(events_file, {}))
    assert set(running_at_end(episodes(events_file, {}))) == set(keys)
    assert steady.pid in {
        p for ps in running_at_end(episodes(events_file, {})).values() for p in ps
    }

"""Workers joining and leaving: only keys that the change gives another worker move (on a
join, keys with the newcomer ahead of their owner in their ring order; on a leave, the
leaver's keys), each once per change, stop() on the old owner before start() on the new one."""

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
        before = {w.id for w in await client.pool_workers()}
        owner = {j.key: j.worker_id for j in await client.pool_jobs()}
        starts_before = Counter(e.key for e in episodes(events_file, {}))
        await churner.ask(command)
        after = {w.id for w in await client.pool_workers()}
        ring = Ring("", dict.fromkeys(after, 0))
        if command == "add":
            (newcomer,) = after - before
            expected = {k for k in keys if newcomer in _ahead(ring.order(k), owner[k])}
        else:
            (leaver,) = before - after
            expected = {k for k in keys if owner[k] == leaver}
        assert expected, "the change moves no key"

        def settled(
            expected: set[str] = expected,
            starts_before: Counter[str] = starts_before,
            owner: dict[str, str] = owner,
            leave: bool = command == "remove",
        ) -> bool:
            starts = Counter(e.key for e in episodes(events_file, {}))
            moved = {k for k in keys if starts[k] != starts_before[k]}
            if leave:
                return moved == expected and runs_exactly_once(events_file, keys, {})
            # A join: each node hands over up to its share of the newcomer's room under the
            # load bound (all of its expected keys when they fit), stopping them all before it
            # places any; once one of a node's keys runs again and all run, it is done.
            handing = {_node(owner[k]) for k in expected}
            done = {_node(owner[k]) for k in moved}
            return (
                moved <= expected and done == handing and runs_exactly_once(events_file, keys, {})
            )

        await eventually(settled, 10, f"{command} settled")
        starts = Counter(e.key for e in episodes(events_file, {}))
        assert all(starts[k] - starts_before[k] <= 1 for k in expected), "a job moved twice"
        assert all(starts[k] == starts_before[k] for k in keys if k not in expected)
    check_no_overlap(episodes(events_file, {}))
    assert set(running_at_end(episodes(events_file, {}))) == set(keys)
    assert steady.pid in {
        p for ps in running_at_end(episodes(events_file, {})).values() for p in ps
    }


def _node(worker: str) -> str:
    return worker.split(".", 1)[0]


def _ahead(order: tuple[str, ...], owner: str) -> tuple[str, ...]:
    return order[: order.index(owner)] if owner in order else order

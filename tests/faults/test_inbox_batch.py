"""A failed claim must not cost the other messages of its inbox batch: the stops and replies
read in the same XREAD are handled whatever happened to the starts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import signal

import redpool
from redpool._scripts import sources
from tests.helpers import eventually
from tests.invariants import episodes

TTL = 10.0  # long: the pause below must fence nothing


async def test_a_stop_read_with_a_start_whose_claim_failed_still_stops_its_job(
    proxy, redis, members, make_node, events_file
):
    for source in sources().values():
        await redis.script_load(source)
    member = await members("--ttl", str(TTL), url=proxy.url)
    # A dispatch timeout (4 s) shorter than the member's lease: its starts are claimed.
    client = await make_node(client_only=True, worker_ttl=TTL, ack_grace_period=2.0)
    await client.dispatch_job("a")

    def stopped(key: str) -> bool:
        return any(e.key == key and e.end != -1 for e in episodes(events_file, {}))

    # Paused until its blocking read (1 s) ended, the member has no XREAD waiting: the
    # start of "b" and the stop of "a" are then read together, in one batch.
    member.signal(signal.SIGSTOP)
    await eventually(lambda: _read_ended(redis), what="the member's blocking read ended")
    dispatch = asyncio.ensure_future(client.dispatch_job("b"))
    stop = asyncio.ensure_future(client.stop_job("a"))
    await eventually(lambda: _written(client), what="both sent")
    claim = hashlib.sha1(sources()["claim"].encode()).hexdigest().encode()
    proxy.lose_reply_to(claim)
    member.signal(signal.SIGCONT)
    await stop  # was StopTimeoutError: the failed claim dropped the stop with it
    assert stopped("a")
    assert proxy.lost == 1
    with contextlib.suppress(redpool.DispatchTimeoutError):
        await dispatch  # its claim ran but its reply was lost: the job is withdrawn


async def _read_ended(redis) -> bool:
    """A connection whose XREAD ended a second ago and sent nothing since: the paused
    member's reader (the client node's reader blocks again at once)."""
    return any(
        c["cmd"] == "xread" and "b" not in c["flags"] and int(c["idle"]) >= 1
        for c in await redis.client_list()
    )


async def _written(client: redpool.Node) -> bool:
    a, b = await client.job_info("a"), await client.job_info("b")
    return a is not None and a.state == "stopping" and b is not None

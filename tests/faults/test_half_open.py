"""Half-open connections: a partition that heals leaves the connections it cut dead for good
(no FIN, no RST). A node must notice that its blocking inbox read will never be answered and
read on a new connection, or it renews its lease but never hears of a start or stop again."""

from __future__ import annotations

from tests.helpers import eventually
from tests.invariants import episodes

TTL = 2.0


async def test_after_a_partition_heals_starts_and_stops_reach_the_node_again(
    proxy, members, make_node, events_file
):
    member = await members("--ttl", str(TTL), "--grace", "3", url=proxy.url)
    client = await make_node(client_only=True, worker_ttl=TTL, ack_grace_period=3.0)
    await client.dispatch_job("before")

    def ran(key: str) -> list[tuple[int, int]]:
        return [(e.start, e.end) for e in episodes(events_file, {}) if e.key == key]

    proxy.blackhole(True)  # the member's XREAD in flight will never get its reply
    # The member fences (stops its job) once its lease could have run out: by then the
    # partition outlasted a whole blocking read (job_sink_block=1 s).
    await eventually(lambda: ran("before")[-1][1] != -1, 3 * TTL, "the member fenced")
    proxy.blackhole(False)
    # Healed: the lease renews on new connections, and the start that routes the job back
    # arrives in the inbox, which only a reader on a new connection sees.
    await eventually(lambda: len(ran("before")) == 2, 5 * TTL, "'before' started again")
    await client.dispatch_job("after")
    await client.stop_job("after")
    assert ran("after")[0][1] != -1, "the stop reached the member"
    assert (await member.ask("keys")).split() == ["before"]

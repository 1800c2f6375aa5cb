"""job_keys, job_payload and pool_workers answer for the whole pool; client-only nodes."""

from __future__ import annotations

import pytest

import redpool


async def test_queries_see_jobs_and_workers_of_other_processes(make_node, members):
    member = await members("--workers", "2")
    client = await make_node(client_only=True)
    await client.dispatch_job("with-payload", b"\x01\x02")
    await client.dispatch_job("empty")
    assert await client.job_keys() == ["empty", "with-payload"]
    assert await client.job_payload("with-payload") == b"\x01\x02"
    assert await client.job_payload("empty") == b""
    assert await client.job_payload("unknown") is None
    infos = await client.pool_workers()
    assert [w.node_id for w in infos] == [member.node_id, member.node_id]
    assert all(w.id.startswith(member.node_id) and w.created_at.tzinfo for w in infos)
    assert await member.ask("keys") == "empty with-payload"


async def test_a_client_only_node_dispatches_stops_and_closes_but_adds_no_worker(
    make_node, members
):
    await members("--workers", "1")
    client = await make_node(client_only=True)
    with pytest.raises(redpool.PoolError, match="client-only"):
        await client.add_worker(object())  # type: ignore[arg-type]
    await client.dispatch_job("k")
    await client.stop_job("k")
    assert await client.job_keys() == []
    await client.close()
    assert client.is_closed()
    with pytest.raises(redpool.PoolClosedError):
        await client.dispatch_job("k")

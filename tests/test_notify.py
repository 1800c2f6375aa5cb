"""notify_worker reaches whoever runs the key, once, in order; also across a move."""

from __future__ import annotations

import asyncio

import pytest
import structlog

import redpool
from tests.helpers import Recorder, eventually
from tests.invariants import events_of


def notes(events_file, key: str) -> list[tuple[int, str]]:
    return [
        (pid, subject.split(":", 1)[1])
        for _, pid, subject in events_of(events_file, "note")
        if subject.split(":", 1)[0] == key
    ]


async def test_notifications_arrive_once_and_in_order(make_node, members, events_file):
    member = await members("--workers", "1")
    client = await make_node(client_only=True)
    await client.dispatch_job("k")
    for i in range(50):
        await client.notify_worker("k", str(i).encode())
    await eventually(lambda: len(notes(events_file, "k")) == 50, 5, "50 notes")
    assert notes(events_file, "k") == [(member.pid, str(i)) for i in range(50)]


async def test_notifications_follow_the_job_when_it_moves(make_node, members, events_file):
    first = await members("--workers", "1")
    client = await make_node(client_only=True)
    keys = [f"k{i}" for i in range(20)]
    await asyncio.gather(*(client.dispatch_job(k) for k in keys))
    sent = 0

    async def send_round() -> None:
        nonlocal sent
        await asyncio.gather(*(client.notify_worker(k, str(sent).encode()) for k in keys))
        sent += 1

    await send_round()
    joining = asyncio.create_task(members("--workers", "1"))  # about half the keys move
    while not joining.done():
        await send_round()
    second = await joining
    while not any(pid == second.pid for _, pid, _ in events_of(events_file, "start")):
        await send_round()
    for _ in range(5):
        await send_round()
    await eventually(
        lambda: all(len(notes(events_file, k)) == sent for k in keys), 10, "every note arrived"
    )
    for key in keys:
        assert [payload for _, payload in notes(events_file, key)] == [str(i) for i in range(sent)]
    moved = [
        k for k in keys if {pid for pid, _ in notes(events_file, k)} == {first.pid, second.pid}
    ]
    assert moved, "no key moved while notifications flowed"


async def test_a_handler_without_handle_notification_gets_a_warning(make_node):
    node = await make_node()

    class Plain:
        async def start(self, job: redpool.Job) -> None:
            pass

        async def stop(self, key: str) -> None:
            pass

    worker = await node.add_worker(Plain())
    await node.dispatch_job("k")
    with structlog.testing.capture_logs() as logs:
        await node.notify_worker("k", b"hello")
        await eventually(lambda: any("notifications dropped" in e["event"] for e in logs))
    assert [j.key for j in worker.jobs()] == ["k"]


async def test_notifying_an_unknown_key_raises_job_not_found(make_node):
    node = await make_node(client_only=True)
    with pytest.raises(redpool.JobNotFoundError):
        await node.notify_worker("nope", b"")


async def test_notifications_sent_before_the_start_are_delivered_after_it(make_node):
    node = await make_node(ack_grace_period=5.0)
    dispatch = asyncio.create_task(node.dispatch_job("early"))
    await eventually(lambda: _admitted(node), what="queued")
    await node.notify_worker("early", b"first")
    handler = Recorder()
    await node.add_worker(handler)
    await dispatch
    await eventually(lambda: handler.notifications == [("early", b"first")])


async def _admitted(node: redpool.Node) -> bool:
    return await node.job_keys() == ["early"]


async def test_notifications_waiting_for_one_job_are_bounded(make_node):
    node = await make_node(ack_grace_period=5.0)
    dispatch = asyncio.create_task(node.dispatch_job("early"))  # queued: nobody takes notes
    await eventually(lambda: _admitted(node), what="queued")
    await asyncio.gather(*(node.notify_worker("early", b"%d" % i) for i in range(1000)))
    with pytest.raises(redpool.QueueFullError, match="1000 notifications already wait"):
        await node.notify_worker("early", b"one too many")
    handler = Recorder()
    await node.add_worker(handler)
    await dispatch
    await eventually(lambda: len(handler.notifications) == 1000, what="all 1000 delivered")
    await node.notify_worker("early", b"room again")


class _HangingNotes(Recorder):
    async def handle_notification(self, key: str, payload: bytes) -> None:
        await asyncio.Event().wait()  # never returns


async def test_a_handle_notification_that_never_returns_does_not_wedge_its_key(make_node):
    node = await make_node(start_timeout=0.5, worker_shutdown_ttl=1.0)
    handler = _HangingNotes()
    await node.add_worker(handler)
    await node.dispatch_job("k")
    await node.notify_worker("k", b"hangs")
    # Was StopTimeoutError: the notification held the key's lock for good, so no stop (not
    # even the fence's) could run.
    await node.stop_job("k")
    assert handler.stopped == ["k"]

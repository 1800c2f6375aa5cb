"""Dramatiq: ``dramatiq bench.peers.dramatiq_tasks --processes 2 --threads 1``; Redis broker,
default middleware and settings."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from .record import record

broker = RedisBroker(url=os.environ["BENCH_BROKER_URL"])  # type: ignore[no-untyped-call]
dramatiq.set_broker(broker)


@dramatiq.actor
def trivial(job_id: int) -> None:
    record(job_id)

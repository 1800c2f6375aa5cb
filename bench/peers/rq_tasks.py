"""RQ: ``rq worker -u $BENCH_BROKER_URL bench`` (the default Worker forks a work horse per job)."""

from __future__ import annotations

from .record import record


def trivial(job_id: int) -> None:
    record(job_id)

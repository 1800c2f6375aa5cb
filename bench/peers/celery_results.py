"""Celery with a result backend: ``celery -A bench.peers.celery_results worker --concurrency 2
--pool prefork``; Redis broker and Redis result backend, otherwise default settings."""

from __future__ import annotations

import os

from celery import Celery

from .record import record

app = Celery("bench", broker=os.environ["BENCH_BROKER_URL"], backend=os.environ["BENCH_BROKER_URL"])


@app.task  # type: ignore[untyped-decorator]
def trivial(job_id: int) -> None:
    record(job_id)

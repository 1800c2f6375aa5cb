"""Level-triggered reconciliation: this node's workers against what the job records say.

Messages only make things fast; this loop makes them right. It compares the records that name
this node's workers with the jobs actually running here and repairs any difference that is seen
on two passes in a row (so it never races an operation that is merely in flight):

* a record says ``starting``/``running`` here but nothing runs here (a lost claim reply, a
  restart after fencing): the job is routed again;
* a record says ``stopping`` here but nothing runs here: the key is freed;
* a job runs here but no record gives it to this worker at that epoch: it is stopped here;
* a job runs here and its record says ``stopping`` (the stop message was lost): it is
  stopped and the key freed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from ._options import Options
from ._scripts import Scripts
from ._worker import Worker

_Finding = tuple[str, str, str, int, str]  # (kind, worker id, key, epoch, state)


class ReconcileHost(Protocol):
    def active_workers(self) -> list[Worker]: ...

    async def reroute(self, jobs: Sequence[tuple[str, int]]) -> None: ...

    async def report_stopped(self, key: str, worker: str, epoch: int) -> None: ...


class Reconciler:
    def __init__(self, host: ReconcileHost, scripts: Scripts, options: Options) -> None:
        self._host = host
        self._scripts = scripts
        self._interval = options.reconcile_interval
        self._suspects: set[_Finding] = set()

    async def step(self) -> None:
        await self.run_once()
        # A suspect is confirmed (or cleared) a quarter interval later, so a repair comes at
        # most 1.25 intervals (worker_ttl each) after the records and the node disagree.
        await asyncio.sleep(self._interval / 4 if self._suspects else self._interval)

    async def run_once(self) -> None:
        workers = {w.id: w for w in self._host.active_workers()}
        if not workers:
            self._suspects.clear()
            return
        records = await self._scripts.owned_jobs(list(workers))
        found: set[_Finding] = set()
        for worker_id, worker in workers.items():
            recorded = {key: epoch for key, epoch, _ in records.get(worker_id, [])}
            for key, epoch, state in records.get(worker_id, []):
                here = worker.local_epoch(key) == epoch
                if state == "stopping" and here:
                    found.add(("unstopped", worker_id, key, epoch, state))
                elif state in ("starting", "running", "stopping") and not here:
                    found.add(("orphan", worker_id, key, epoch, state))
            for key, epoch in worker.running_keys():
                if recorded.get(key) != epoch:
                    found.add(("stray", worker_id, key, epoch, ""))
        confirmed = found & self._suspects
        self._suspects = found - confirmed
        reroute: list[tuple[str, int]] = []
        for kind, worker_id, key, epoch, state in confirmed:
            if kind == "stray":
                await workers[worker_id].stop_local(key, epoch)
            elif kind == "unstopped":
                await workers[worker_id].stop_local(key, epoch, report=True)
            elif state == "stopping":
                await self._host.report_stopped(key, worker_id, epoch)
            else:
                reroute.append((key, epoch))
        if reroute:
            await self._host.reroute(reroute)

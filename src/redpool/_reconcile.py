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
from collections.abc import Awaitable
from dataclasses import dataclass

from ._host import Host
from ._membership import Membership
from ._options import Options
from ._scripts import Scripts


@dataclass(frozen=True, slots=True)
class _Finding:
    kind: str  # orphan, unstopped or stray
    worker: str
    key: str
    epoch: int
    state: str  # the record's state ('' for a stray)


class Reconciler:
    def __init__(self, host: Host, members: Membership, scripts: Scripts, options: Options) -> None:
        self._host = host
        self._members = members
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
        records = await self._scripts.owned_jobs(self._host.life.id, list(workers))
        if records is None:  # not this node's pool life: its heartbeat settles that first
            self._suspects.clear()
            return
        found: set[_Finding] = set()
        for worker_id, worker in workers.items():
            recorded = {key: epoch for key, epoch, _ in records.get(worker_id, [])}
            for key, epoch, state in records.get(worker_id, []):
                here = worker._local_epoch(key) == epoch
                if state == "stopping" and here:
                    found.add(_Finding("unstopped", worker_id, key, epoch, state))
                elif state in ("starting", "running", "stopping") and not here:
                    found.add(_Finding("orphan", worker_id, key, epoch, state))
            for key, epoch in worker._running_keys():
                if recorded.get(key) != epoch:
                    found.add(_Finding("stray", worker_id, key, epoch, ""))
        confirmed = found & self._suspects
        self._suspects = found - confirmed
        reroute: list[tuple[str, int]] = []
        repairs: list[Awaitable[object]] = []
        for f in confirmed:
            if f.kind == "stray":
                repairs.append(workers[f.worker]._stop_local(f.key, f.epoch))
            elif f.kind == "unstopped":
                repairs.append(workers[f.worker]._stop_local(f.key, f.epoch, report=True))
            elif f.state == "stopping":
                repairs.append(self._host.report_stopped(f.key, f.worker, f.epoch))
            else:
                reroute.append((f.key, f.epoch))
        if reroute:
            repairs.append(self._members.assign(reroute))
        # Side by side: one slow stop() must not hold up the other repairs of this pass.
        results = await asyncio.gather(*repairs, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]  # the supervisor logs it; the others were repaired

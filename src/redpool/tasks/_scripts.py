"""Typed calls of the tasks layer's Lua scripts (``lua/task_*.lua`` behind
``lua/_tasks_prelude.lua``), run like the core's: EVALSHA, never sent twice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import msgpack
import redis.asyncio as aioredis

from .._codec import text
from .._scripts import ScriptRunner, load_sources
from ._keys import TaskKeys

_NAMES = (
    "task_cancel",
    "task_checkpoint",
    "task_claim",
    "task_configure_queue",
    "task_control",
    "task_delete",
    "task_finish",
    "task_fire",
    "task_hand_back",
    "task_hold",
    "task_info",
    "task_join",
    "task_leave",
    "task_maintain",
    "task_progress",
    "task_purge",
    "task_release",
    "task_retain",
    "task_schedule_suspend",
    "task_schedule_upsert",
    "task_schedule_wake",
    "task_submit",
    "task_wait",
)


# As in the core (_scripts.ALLOW_OOM): a full Redis refuses new task jobs (task_submit) but
# lets runs start, end, be canceled and be re-placed, so no worker is stuck with a run it
# cannot report. What they add is bounded: records rewritten in place, capped streams.
ALLOW_OOM = frozenset(
    {
        "task_cancel",
        "task_checkpoint",
        "task_claim",
        "task_control",
        "task_delete",
        "task_finish",
        "task_fire",
        "task_hand_back",
        "task_leave",
        "task_maintain",
        "task_purge",
        "task_release",
        "task_retain",
    }
)


@cache
def _sources() -> dict[str, str]:
    return load_sources(("_tasks_prelude", "_task_recurring", "_tasks_holds"), _NAMES, ALLOW_OOM)


@dataclass(frozen=True, slots=True)
class Admit:
    """One job for task_submit in its stored form, its options resolved (submit > task >
    registry)."""

    key: str
    task: str
    queue: str
    params: bytes
    options: dict[str, Any]  # to, ma, mi, rs, kp, kf, pri, tn, lb (lua/_tasks_prelude.lua)
    delay_ms: int  # -1: due now
    idempotency_key: str
    fingerprint: str
    idempotency_ttl_ms: int
    if_active: str
    auto_idempotency: bool = False  # the key is the submitting node's own retry guard


@dataclass(frozen=True, slots=True)
class Admission:
    """task_submit's answer: ``outcome`` is ok, exists, active, idem, conflict or full
    (``status`` then says what is full: 'queue' or 'key', and ``generation`` how many jobs
    wait in it)."""

    outcome: str
    key: str
    generation: int
    status: str


@dataclass(frozen=True, slots=True)
class Refusal:
    """task_submit refused the job at ``index`` of its batch: nothing was admitted."""

    index: int
    admission: Admission


@dataclass(frozen=True, slots=True)
class Claim:
    """A run a worker took (task_claim)."""

    key: str
    epoch: int
    task: str
    params: bytes
    attempt: int
    timeout_ms: int
    retry_spec: bytes
    generation: int
    tenant: str | None
    labels: dict[str, str]
    cancel_requested: bool
    stall_timeout_ms: int = 0
    interrupts: int = 0
    resumed: bool = False  # the generation was suspended and resumed
    checkpoint_state: bytes = b""  # the generation's last checkpoint(state), msgpack
    progress: tuple[bytes, ...] = ()  # its last progress (lua/task_claim.lua)
    schedule: dict[str, Any] | None = None  # a recurring job's {k, cr, tz, od}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the job looked like to task_wait: ``state`` missing, corrupt, superseded, done
    or waiting."""

    state: str
    status: str = ""
    generation: int = 0
    value: bytes = b""


@dataclass(frozen=True, slots=True)
class Stored:
    """What task_info read of a generation."""

    record: bytes
    error: bytes
    progress: list[bytes]  # completed, total (-1: unknown), details, updated ms; or empty


@dataclass(frozen=True, slots=True)
class Fired:
    """task_fire's answer."""

    next_due_ms: int  # -1: nothing scheduled
    now_ms: int
    fired: int


@dataclass(frozen=True, slots=True)
class Upkeep:
    """task_maintain's answer."""

    next_due_ms: int  # -1: nothing scheduled
    now_ms: int
    untaken: list[tuple[str, str, int]]  # (key, worker, epoch) handed out, not yet claimed
    interrupted: int
    unregistered: list[str]  # own workers reaped while the node was cut off
    pending: list[tuple[str, str, int, str]]  # (key, worker, epoch, status) of own flagged runs
    owned: list[tuple[str, str, int]]  # (key, worker, epoch) the records give own workers


@dataclass(frozen=True, slots=True)
class Retained:
    """task_retain's answer: jobs purged as their keep time passed, and as more than
    ``max_retained`` were kept; ``more``: the batch was full (call again)."""

    expired: int
    evicted: int
    more: bool


# A run's report for task_finish: key, epoch, outcome, value, retry in ms (-1: none), and a
# schedule's hint for its next run (b"" for other jobs).
Report = tuple[str, int, str, bytes, int, bytes]

# The scripts on the path of every task (submit, then the worker's claim and finish) get
# connections of their own, as the core's admit and started: a pool checkout (a lock and a
# health-check read) was a large part of a worker's CPU per report (cProfile, bench/tasks.py).
HOT = ("task_submit", "task_claim", "task_finish")


class TaskScripts(ScriptRunner):
    def __init__(self, client: aioredis.Redis, keys: TaskKeys) -> None:
        super().__init__(client, keys.script_keys(), keys.script_templates(), _sources(), HOT)

    async def submit(self, jobs: Sequence[Admit]) -> list[Admission] | Refusal | None:
        """One admission per job, in order; a Refusal when one job was refused (then none
        was admitted); None when the pool shuts down."""
        args: list[str | int | bytes] = []
        for job in jobs:
            args += [
                job.key,
                job.task,
                job.queue,
                job.params,
                msgpack.packb(job.options),
                job.delay_ms,
                job.idempotency_key,
                job.fingerprint,
                job.idempotency_ttl_ms,
                job.if_active,
                int(job.auto_idempotency),
            ]
        res = await self._run("task_submit", args)
        if res and not isinstance(res[0], list):
            if text(res[0]) == "refused":
                index = int(res[1]) - 1
                return Refusal(index, _admission(jobs[index], res[2]))
            return None  # {'shutdown'}
        return [_admission(job, item) for job, item in zip(jobs, res, strict=True)]

    async def claim(
        self, worker: str, suspendable: Sequence[str], starts: Sequence[tuple[str, int]]
    ) -> list[Claim | None]:
        """The runs taken; ``suspendable``: the worker's task names declared so."""
        args: list[str | int | bytes] = [worker, msgpack.packb(list(suspendable))]
        for key, epoch in starts:
            args += [key, epoch]
        out: list[Claim | None] = []
        for (key, epoch), item in zip(starts, await self._run("task_claim", args), strict=True):
            if item == 0:
                out.append(None)
                continue
            task, params, attempt, timeout, spec, gen, tenant, labels, cancel = item[:9]
            stall, ni, resumed, state, progress = item[9:14]
            schedule = bytes(item[14]) if len(item) > 14 else b""
            out.append(
                Claim(
                    key,
                    epoch,
                    text(task),
                    bytes(params),
                    int(attempt),
                    int(timeout),
                    bytes(spec),
                    int(gen),
                    text(tenant) or None,
                    dict(msgpack.unpackb(bytes(labels))),
                    bool(int(cancel)),
                    int(stall),
                    int(ni),
                    bool(int(resumed)),
                    bytes(state),
                    tuple(bytes(v) for v in progress),
                    dict(msgpack.unpackb(schedule)) if schedule else None,
                )
            )
        return out

    async def control(
        self,
        key: str,
        generation: int,
        action: str,
        request: str,
        memo_ttl_ms: int,
        node: str,
        waiter: int,
    ) -> tuple[str, str]:
        """(outcome 'ok' | 'invalid' | 'notsuspendable' | 'missing', status) of a pause,
        resume, suspend, withdraw or watch (lua/task_control.lua)."""
        args: list[str | int] = [key, generation, action, request, memo_ttl_ms, node, waiter]
        res = await self._run("task_control", args)
        return text(res[0]), text(res[1])

    async def checkpoint(
        self, worker: str, key: str, epoch: int, state: bytes | None, ack: bool
    ) -> str:
        """The job's status after a run's checkpoint (or 'unowned')."""
        args: list[str | int | bytes] = [
            worker, key, epoch, int(state is not None), state or b"", int(ack)
        ]  # fmt: skip
        return text(await self._run("task_checkpoint", args))

    async def finish(self, worker: str, reports: Sequence[Report]) -> list[tuple[str, str, int]]:
        """Per report (verdict 'ok' | 'unowned', the job's status after it, due in ms when
        scheduled, else -1); see ``Report`` and lua/task_finish.lua."""
        args: list[str | int | bytes] = [worker]
        for report in reports:
            args += report
        res = await self._run("task_finish", args)
        return [(text(verdict), text(status), int(due)) for verdict, status, due in res[0]]

    async def wait(self, key: str, node: str, request: int, generation: int) -> Outcome:
        res = await self._run("task_wait", [key, node, request, generation])
        state = text(res[0])
        if state == "done":
            return Outcome(state, text(res[1]), int(res[2]), bytes(res[3]))
        if state == "waiting":
            return Outcome(state, text(res[1]), int(res[2]))
        return Outcome(state)

    async def info(self, key: str, generation: int) -> Stored | None:
        """The record, error and progress of a generation (0: the current), or None."""
        res = await self._run("task_info", [key, generation])
        if text(res[0]) != "ok":
            return None
        return Stored(bytes(res[1]), bytes(res[2]), [bytes(v) for v in res[3]])

    async def cancel(
        self, key: str, generation: int, request: str, memo_ttl_ms: int
    ) -> tuple[str, int]:
        """The status after the call ('missing' when there is no such job) and the generation
        canceled; a retry with the same ``request`` answers what the first call did."""
        res = await self._run("task_cancel", [key, generation, request, memo_ttl_ms])
        return text(res[0]), int(res[1])

    async def join(
        self, worker: str, concurrency: int, queues: dict[str, int], draining: bool = False
    ) -> int:
        """Runs handed to the worker at once; -1 when its node holds no lease."""
        args: list[str | int | bytes] = [worker, concurrency, msgpack.packb(queues), int(draining)]
        return int(await self._run("task_join", args))

    async def leave(self, worker: str) -> int:
        return int(await self._run("task_leave", [worker]))

    async def configure_queue(self, queue: str, max_running: int, max_queued: int) -> None:
        await self._run("task_configure_queue", [queue, max_running, max_queued])

    async def maintain(self, node: str, ttl_ms: int, limit: int, workers: Sequence[str]) -> Upkeep:
        due, now, flat, interrupted, unregistered, flagged, owned = await self._run(
            "task_maintain", [node, ttl_ms, limit, *workers]
        )
        pending = [
            (text(flagged[i]), text(flagged[i + 1]), int(flagged[i + 2]), text(flagged[i + 3]))
            for i in range(0, len(flagged), 4)
        ]
        return Upkeep(
            int(due),
            int(now),
            _runs(flat),
            int(interrupted),
            [text(w) for w in unregistered],
            pending,
            _runs(owned),
        )

    async def hand_back(self, worker: str, runs: Sequence[tuple[str, int]]) -> int:
        """Give back runs the records give ``worker`` that it does not have; how many moved
        (lua/task_hand_back.lua)."""
        args: list[str | int] = [worker]
        for key, epoch in runs:
            args += [key, epoch]
        return int(await self._run("task_hand_back", args))

    async def progress(
        self, worker: str, key: str, epoch: int, completed: float, total: float, details: str
    ) -> str:
        """'ok', 'invalid' (completed > total) or 'unowned'."""
        args: list[str | int] = [worker, key, epoch, repr(completed), repr(total), details]
        return text(await self._run("task_progress", args))

    async def hold(
        self, worker: str, key: str, epoch: int, target: str, node: str
    ) -> tuple[str, list[str]]:
        """('ok' | 'busy' | 'cycle' | 'deep' | 'unowned', the keys it names): lua/task_hold.lua."""
        res = await self._run("task_hold", [worker, key, epoch, target, node])
        outcome = text(res[0])
        if outcome == "cycle":
            return ("deep" if int(res[1]) else "cycle"), [text(k) for k in res[2:]]
        return outcome, [text(k) for k in res[1:]]

    async def release(self, worker: str, key: str, epoch: int, target: str) -> str:
        """'ok' or 'unowned' (the run's end released its holds already)."""
        return text(await self._run("task_release", [worker, key, epoch, target]))

    async def retain(self, limit: int, max_retained: int) -> Retained:
        """Purge up to ``limit`` finished jobs (lua/task_retain.lua)."""
        expired, evicted, more = await self._run("task_retain", [limit, max_retained])
        return Retained(int(expired), int(evicted), bool(int(more)))

    async def purge(self, limit: int) -> str:
        """'more' or 'done' (lua/task_purge.lua)."""
        return text(await self._run("task_purge", [limit]))

    async def delete(self, key: str) -> tuple[str, str]:
        """('ok' | 'missing' | 'invalid', the status when invalid)."""
        res = await self._run("task_delete", [key])
        return text(res[0]), text(res[1]) if len(res) > 1 else ""

    async def fire(self, limit: int) -> Fired:
        """Place up to ``limit`` due jobs (lua/task_fire.lua)."""
        due, now, fired = await self._run("task_fire", [limit])
        return Fired(int(due), int(now), int(fired))

    async def schedule_upsert(
        self, job: Admit, spec: dict[str, Any], run_now: bool
    ) -> tuple[str, int, str, int]:
        """(outcome new | changed | same | exists | shutdown, generation, status, due in ms
        or -1) of lua/task_schedule_upsert.lua."""
        args: list[str | int | bytes] = [
            job.key, job.task, job.queue, job.params, msgpack.packb(job.options),
            msgpack.packb(spec), int(run_now),
        ]  # fmt: skip
        res = await self._run("task_schedule_upsert", args)
        return text(res[0]), int(res[1]), text(res[2]), int(res[3])

    async def schedule_wake(self, key: str, within_ms: int) -> tuple[str, str, int]:
        """(outcome ok | again | missing | invalid, status, due in ms or -1)."""
        res = await self._run("task_schedule_wake", [key, within_ms])
        return text(res[0]), text(res[1]), int(res[2])

    async def schedule_suspend(
        self, key: str, action: str, grid: Sequence[int]
    ) -> tuple[str, str, int]:
        """(outcome ok | missing | invalid, status, due in ms or -1); ``action`` suspend or
        resume; ``grid``: a cron schedule's next points (ms)."""
        res = await self._run("task_schedule_suspend", [key, action, msgpack.packb(list(grid))])
        return text(res[0]), text(res[1]), int(res[2])


def _runs(flat: list[Any]) -> list[tuple[str, str, int]]:
    """(key, worker, epoch) triples of a flat script reply."""
    return [(text(flat[i]), text(flat[i + 1]), int(flat[i + 2])) for i in range(0, len(flat), 3)]


def _admission(job: Admit, res: list[Any]) -> Admission:
    outcome = text(res[0])
    if outcome == "idem":
        return Admission(outcome, text(res[1]), int(res[2]), text(res[3]))
    if outcome == "conflict":
        return Admission(outcome, text(res[1]), 0, "")
    if outcome == "full":
        return Admission(outcome, job.key, int(res[2]), text(res[1]))
    return Admission(outcome, job.key, int(res[1]), text(res[2]))

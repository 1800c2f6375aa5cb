"""The status x action table (README "Tasks", "Pause, resume, suspend") as a hypothesis state
machine against a pure-Python model of it (issue 10, Tests; design §7 item 1).

A handful of keys; the rules are submit (each ``if_active``; due now, later, or in a queue no
worker serves; a suspendable task or not), cancel, pause (acknowledged at a checkpoint the test
has the run reach, or not), resume, suspend, delete, and the run's own progress: the task
(``puppet`` in sample_tasks.py) does only what the test tells it through Redis (checkpoint,
finish, fail). The actions alternate between a client node in this process and one in another
(tests/tasks/client_proc.py); a task worker process runs the jobs. The model predicts what each
call answers (a status, or the error with the true status) and the key's status after it.
After every step:

- the status read by the other process's node equals the model's, once settled: a status on
  the way (starting, pausing, suspending, canceling) may be seen first, any other is a fault;
- at most one run per key at a time, and a run under way exactly when the model has one
  (the task records its runs' starts and ends in Redis);
- no job lost: every generation submitted, read through the handle of the process that
  submitted it, is where the model says (its final status, still queued in its key's FIFO,
  or gone once its key was deleted; a generation replaced by a later one keeps its outcome).

Reproducible on CI: ``derandomize=True`` (the examples come from a fixed seed) and no example
database; 60 examples of up to 30 steps (under a minute, so the suite stays near 10 minutes
on 2 cores)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from redis.asyncio import Redis

import redpool
from redpool import Status
from tests.procs import ROOT
from tests.tasks.client_proc import Handles, act

S = Status
KEYS = 3
SETTLE = 15.0  # seconds a step's effects may take to show
ON_THE_WAY = {S.STARTING, S.PAUSING, S.SUSPENDING, S.CANCELING}
ON_WORKER = {S.RUNNING, S.PAUSED, S.SUSPENDING}  # the model's statuses with a run under way
UNOWNED = {S.SCHEDULED, S.QUEUED, S.SUSPENDED}
STARTS = {"run": S.RUNNING, "later": S.SCHEDULED, "nobody": S.QUEUED}


class Peer:
    """The client node in the other process: JSON requests over its stdin, answered (in any
    order, by id) on its stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, url: str, pool: str, env: dict[str, str]) -> Peer:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.tasks.client_proc", url, pool, cwd=ROOT, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.strip() == b"ready", line
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            reply = json.loads(line)
            self._waiting.pop(reply.pop("id")).set_result(reply)

    async def call(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        n = next(self._ids)
        self._waiting[n] = asyncio.get_running_loop().create_future()
        self.proc.stdin.write(json.dumps({"id": n, **req}).encode() + b"\n")
        await self.proc.stdin.drain()
        return await asyncio.wait_for(self._waiting[n], 60)

    async def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()


class Rig:
    """What every example shares: an event loop in a thread of its own (so the nodes here
    keep their leases between steps), the task worker process, a client node here ('A') and
    the client node of the other process ('B')."""

    def __init__(self, url: str, pool: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.examples = itertools.count()
        self.handles: Handles = {}
        self.run(self._start(url, pool))

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def _start(self, url: str, pool: str) -> None:
        self.redis = Redis.from_url(url)
        async for key in self.redis.scan_iter("test:model:*"):
            await self.redis.delete(key)
        env = {**os.environ, "REDPOOL_TEST_REDIS": url}
        self.worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.tasks.worker_proc", url, pool, "8", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.worker.stdout is not None
        line = await asyncio.wait_for(self.worker.stdout.readline(), 20)
        assert line.startswith(b"ready"), line
        self.node = await redpool.add_node(pool, url, client_only=True, worker_ttl=1.0)
        self.peer = await Peer.start(url, pool, env)

    async def act(self, side: str, req: dict[str, Any]) -> dict[str, Any]:
        if side == "B":
            return await self.peer.call(req)
        return await act(self.node, self.handles, req)

    def close(self) -> None:
        async def close() -> None:
            with contextlib.suppress(Exception):
                await self.peer.close()
            with contextlib.suppress(Exception):
                await self.node.close()
            if self.worker.returncode is None:
                self.worker.kill()
                await self.worker.wait()
            await self.redis.aclose()

        self.run(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@dataclass
class Gen:
    """A generation as the model sees it: submitted by ``side``; its status (None: deleted)."""

    key: str
    g: int
    side: str
    task: str
    kind: str
    status: Status | None = S.QUEUED
    superseded: bool = False


@dataclass
class Slot:
    """A key as the model sees it: its current generation, its FIFO, a resume asked while
    suspending."""

    key: str
    cur: Gen | None = None
    fifo: list[Gen] = field(default_factory=list)
    resume_after: bool = False
    seen: tuple[int, Status] | None = None  # what it had settled into after the last step

    @property
    def status(self) -> Status | None:
        return self.cur.status if self.cur else None

    @property
    def active(self) -> bool:
        return self.status is not None and not self.status.terminal


def _start(slot: Slot, gen: Gen) -> None:
    slot.cur, slot.resume_after = gen, False
    gen.status = STARTS[gen.kind]


def _end(slot: Slot, status: Status) -> None:
    """The current generation ends; the head of the key's FIFO takes its place."""
    assert slot.cur is not None
    slot.cur.status = status
    slot.resume_after = False
    if slot.fifo:
        slot.cur.superseded = True
        _start(slot, slot.fifo.pop(0))


def _error(name: str, status: Status | None = None) -> dict[str, Any]:
    return {"error": name, "status": status.value if status else None}


def _ok(status: Status | None) -> dict[str, Any]:
    return {"status": status.value if status else None}


INVALID = "InvalidTransitionError"
MISSING = _error("JobNotFoundError")


class TableModel(RuleBasedStateMachine):
    rig: Rig

    def __init__(self) -> None:
        super().__init__()
        n = next(self.rig.examples)
        self.slots = [Slot(f"m{n}.{i}") for i in range(KEYS)]
        self.gens: list[Gen] = []
        self.steps = itertools.count()
        self.trace: list[str] = []  # the steps so far, for a failure's message

    # -- driving -------------------------------------------------------------------------

    def side(self) -> str:
        """Which client node acts: they alternate."""
        return "AB"[next(self.steps) % 2]

    def act(self, req: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
        side = self.side()
        got: dict[str, Any] = self.rig.run(self.rig.act(side, req))
        self.trace.append(f"{side} {req} -> {got}")
        if "generation" not in want:
            assert got == want, f"{req} from {side}: got {got}, the model says {want}"
        return got

    def command(self, slot: Slot, what: str) -> None:
        """Tell the key's run to do ``what`` and wait until it took the command."""

        async def tell() -> None:
            await self.rig.redis.rpush(f"test:model:cmd:{slot.key}", what)
            got = await self.rig.redis.blpop([f"test:model:ack:{slot.key}"], timeout=SETTLE)
            assert got is not None, f"{slot.key}: the run did not take {what!r}"
            assert got[1].decode() == what

        self.trace.append(f"run of {slot.key}: {what}")
        self.rig.run(tell())

    # -- rules -----------------------------------------------------------------------------

    @rule(
        i=st.integers(0, KEYS - 1),
        if_active=st.sampled_from(["reject", "return", "queue", "replace"]),
        kind=st.sampled_from(["run", "run", "later", "nobody"]),
        task=st.sampled_from(["puppet", "rigid"]),
    )
    def submit(self, i: int, if_active: str, kind: str, task: str) -> None:
        slot = self.slots[i]
        if slot.active and if_active == "queue" and len(slot.fifo) >= 2:
            if_active = "reject"  # keep the FIFOs short
        req = {"op": "submit", "key": slot.key, "if_active": if_active, "kind": kind, "task": task}
        side = "AB"[next(self.steps) % 2]
        got = self.rig.run(self.rig.act(side, req))
        self.trace.append(f"{side} {req} -> {got}")
        if slot.active and if_active == "reject":
            assert got.get("error") == "JobExistsError", f"{req}: {got}"
            return
        if slot.active and if_active == "return":
            assert slot.cur is not None
            assert got == {"generation": slot.cur.g, "existing": True}, f"{req}: {got}"
            return
        assert "error" not in got and not got["existing"], f"{req}: {got}"
        gen = Gen(slot.key, got["generation"], side, task, kind)
        self.gens.append(gen)
        if not slot.active:
            if slot.cur is not None:
                slot.cur.superseded = True
            _start(slot, gen)
        elif if_active == "queue":
            slot.fifo.append(gen)
        else:  # replace: the new one is next; the active one ends now, or once it stopped
            slot.fifo.insert(0, gen)
            _end(slot, S.CANCELED)

    @rule(i=st.integers(0, KEYS - 1))
    def cancel(self, i: int) -> None:
        slot = self.slots[i]
        status = slot.status
        if status is None:
            self.act({"op": "cancel", "key": slot.key}, MISSING)
        elif status.terminal:
            self.act({"op": "cancel", "key": slot.key}, _ok(status))
        else:
            answer = S.CANCELING if status in ON_WORKER else S.CANCELED
            self.act({"op": "cancel", "key": slot.key}, _ok(answer))
            _end(slot, S.CANCELED)

    @rule(i=st.integers(0, KEYS - 1))
    def pause_unacknowledged(self, i: int) -> None:
        """A pause the run does not acknowledge (it reaches no checkpoint meanwhile)."""
        slot = self.slots[i]
        req = {"op": "pause", "key": slot.key, "ack_timeout": 0.2}
        if slot.status is None:
            self.act(req, MISSING)
        elif slot.status is S.RUNNING:
            self.act(req, _error("PauseTimeoutError"))
        elif slot.status is S.PAUSED:
            self.act(req, _ok(S.PAUSED))
        else:
            self.act(req, _error(INVALID, slot.status))

    @precondition(lambda self: any(s.status is S.RUNNING for s in self.slots))
    @rule(data=st.data())
    def pause_acknowledged(self, data: st.DataObject) -> None:
        """A pause of a running job whose run reaches a checkpoint while the pause waits."""
        slot = data.draw(st.sampled_from([s for s in self.slots if s.status is S.RUNNING]))
        side = self.side()

        async def pause() -> dict[str, Any]:
            req = {"op": "pause", "key": slot.key, "ack_timeout": SETTLE}
            call = asyncio.ensure_future(self.rig.act(side, req))
            await self.settled(slot, {S.PAUSING})
            await self.rig.redis.rpush(f"test:model:cmd:{slot.key}", "checkpoint")
            return await call

        got = self.rig.run(pause())
        self.trace.append(f"{side} pause {slot.key}, checkpoint meanwhile -> {got}")
        assert got == _ok(S.PAUSED), f"pause of {slot.key} from {side}: {got}"
        self.command_taken(slot)
        assert slot.cur is not None
        slot.cur.status = S.PAUSED

    def command_taken(self, slot: Slot) -> None:
        got = self.rig.run(self.rig.redis.lpop(f"test:model:ack:{slot.key}"))
        assert got == b"checkpoint", f"{slot.key}: {got!r}"

    @rule(i=st.integers(0, KEYS - 1))
    def resume(self, i: int) -> None:
        slot = self.slots[i]
        status = slot.status
        req = {"op": "resume", "key": slot.key}
        if status is None:
            self.act(req, MISSING)
        elif status.terminal:
            self.act(req, _error(INVALID, status))
        elif status is S.PAUSED:
            self.act(req, _ok(S.RUNNING))
            slot.cur.status = S.RUNNING  # type: ignore[union-attr]
        elif status is S.SUSPENDED:
            assert slot.cur is not None
            self.act(req, _ok(S.QUEUED if slot.cur.kind == "nobody" else S.STARTING))
            slot.cur.status = S.QUEUED if slot.cur.kind == "nobody" else S.RUNNING
        elif status is S.SUSPENDING:
            self.act(req, _ok(S.SUSPENDING))
            slot.resume_after = True
        else:  # scheduled, queued, running: nothing to resume
            self.act(req, _ok(status))

    @rule(i=st.integers(0, KEYS - 1))
    def suspend(self, i: int) -> None:
        slot = self.slots[i]
        status = slot.status
        wait = status not in (S.RUNNING, S.SUSPENDING)  # those stop at a checkpoint we send
        req = {"op": "suspend", "key": slot.key, "wait": wait}
        if status is None:
            self.act(req, MISSING)
        elif status.terminal:
            self.act(req, _error(INVALID, status))
        elif status in (S.SUSPENDING, S.SUSPENDED):
            self.act(req, _ok(status))
        elif status in UNOWNED:
            self.act(req, _ok(S.SUSPENDED))
            slot.cur.status = S.SUSPENDED  # type: ignore[union-attr]
        else:
            assert slot.cur is not None
            if slot.cur.task == "rigid":
                self.act(req, _error("NotSuspendableError", status))
            elif status is S.RUNNING:
                self.act(req, _ok(S.SUSPENDING))
                slot.cur.status = S.SUSPENDING
            else:  # paused: it stops at the checkpoint it waits at
                self.act(req, _ok(S.SUSPENDED))
                slot.cur.status = S.SUSPENDED

    @rule(i=st.integers(0, KEYS - 1))
    def delete(self, i: int) -> None:
        slot = self.slots[i]
        status = slot.status
        req = {"op": "delete", "key": slot.key}
        if status is None:
            self.act(req, MISSING)
        elif status in ON_WORKER:
            self.act(req, _error(INVALID, status))
        else:
            self.act(req, _ok(None))
            for gen in self.gens:  # every generation of the key: its history goes too
                if gen.key == slot.key:
                    gen.status = None
            slot.cur, slot.fifo = None, []

    @precondition(lambda self: any(s.status in (S.RUNNING, S.SUSPENDING) for s in self.slots))
    @rule(data=st.data(), what=st.sampled_from(["checkpoint", "finish", "fail"]))
    def progress(self, data: st.DataObject, what: str) -> None:
        """The run itself goes on: it reaches a checkpoint, returns, or fails."""
        busy = [s for s in self.slots if s.status in (S.RUNNING, S.SUSPENDING)]
        slot = data.draw(st.sampled_from(busy))
        self.command(slot, what)
        assert slot.cur is not None
        if what == "finish":
            _end(slot, S.SUCCEEDED)
        elif what == "fail":
            _end(slot, S.FAILED)
        elif slot.status is S.SUSPENDING:  # it stops there; a resume asked meanwhile places it
            slot.cur.status = S.RUNNING if slot.resume_after else S.SUSPENDED
            slot.resume_after = False

    # -- invariants ------------------------------------------------------------------------

    async def settled(self, slot: Slot, want: set[Status] | None = None) -> None:
        """Wait until the other process reads the key's status the model has (or one of
        ``want``), for its current generation, and its run is under way exactly when the
        model has one; fail at once on a status the key should never pass through."""
        gen = slot.cur
        wanted = want or ({gen.status} if gen and gen.status else set())
        deadline = time.monotonic() + SETTLE
        while True:
            got = await self.rig.peer.call({"op": "info", "key": slot.key})
            if not wanted:
                ok = got == MISSING
            else:
                assert gen is not None
                if "error" in got:
                    raise AssertionError(f"{slot.key}: {got}, the model says {gen}")
                status = S(got["status"])
                was = {slot.seen[1]} if slot.seen and slot.seen[0] == gen.g else set()
                if got["generation"] == gen.g:
                    assert status in wanted | ON_THE_WAY | was, (
                        f"{slot.key}: {status} seen, the model says {wanted} ({gen})"
                    )
                ok = got["generation"] == gen.g and status in wanted
            if ok and want is None:
                ok = await self.runs_under_way(slot) == (slot.status in ON_WORKER)
            if ok:
                if want is None:
                    slot.seen = (gen.g, gen.status) if gen and gen.status else None
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{slot.key}: {got} after {SETTLE}s, the model: {gen}")
            await asyncio.sleep(0.005)

    async def runs_under_way(self, slot: Slot) -> bool:
        """Whether a run of the key is under way; at most one ever is. (A run canceled
        during its first write may leave only its end.)"""
        entries = await self.rig.redis.lrange("test:model:runs", 0, -1)
        on: str | None = None
        ended: set[str] = set()
        for entry in entries:
            what, key, epoch = entry.decode().split()
            if key != slot.key:
                continue
            if what == "start":
                assert on is None, f"{key}: run {epoch} started while {on} was under way"
                on = epoch
            else:
                assert epoch not in ended, f"{key}: run {epoch} ended twice"
                ended.add(epoch)
                on = None if on == epoch else on
        return on is not None

    @invariant()
    def the_pool_is_as_the_model_says(self) -> None:
        """Each key settled into the model's status, then no job lost."""
        try:
            for slot in self.slots:
                self.rig.run(self.settled(slot))
            self.no_job_lost()
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nafter:\n" + "\n".join(self.trace)) from None

    def no_job_lost(self) -> None:
        """Every generation, through the handle of the process that submitted it."""
        for side in "AB":
            gens = [g for g in self.gens if g.side == side]
            reqs = [{"op": "info", "key": g.key, "generation": g.g} for g in gens]
            if side == "B":
                infos = self.rig.run(self.rig.peer.call({"op": "infos", "requests": reqs}))
                got = infos["infos"]
            else:
                got = [self.rig.run(self.rig.act("A", req)) for req in reqs]
            for gen, info in zip(gens, got, strict=True):
                want = _expected(gen, self.slots, self.gens)
                assert not want or info == want, f"{gen}: {info}, the model says {want}"

    def teardown(self) -> None:
        """Leave no run behind for the next example (the worker's slots are shared)."""

        async def clear() -> int:
            for slot in self.slots:
                handle = self.rig.node.job(slot.key)
                for _ in range(10):
                    try:
                        await handle.delete()
                        break
                    except redpool.JobNotFoundError:
                        break
                    except redpool.InvalidTransitionError:
                        await handle.cancel(wait=True, timeout=SETTLE)
            stats = await self.rig.node.jobs.stats()
            return sum(w.running for w in stats.workers.values())

        running = self.rig.run(clear())  # no slot leaked: every run gave its slot back
        assert running == 0, f"{running} slots taken after:\n" + "\n".join(self.trace)


def _expected(gen: Gen, slots: list[Slot], gens: list[Gen]) -> dict[str, Any]:
    """What info() of a generation answers, per the model."""
    if gen.status is None:
        return MISSING
    slot = next(s for s in slots if s.key == gen.key)
    if gen in slot.fifo:
        return {"status": S.QUEUED.value, "generation": gen.g}
    later = [g for g in gens if g.key == gen.key and g.superseded and g.g > gen.g]
    if gen.superseded and len(later) >= 20:  # "the key's last 20 replaced generations"
        return {}  # not checked
    return {"status": gen.status.value, "generation": gen.g}


@pytest.mark.timeout(600)
def test_the_status_action_table_holds_against_its_model(redis_url: str, pool_name: str) -> None:
    rig = Rig(redis_url, pool_name)
    try:
        TableModel.rig = rig
        run_state_machine_as_test(
            TableModel,
            settings=settings(
                max_examples=60,
                stateful_step_count=30,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
                report_multiple_bugs=False,
            ),
        )
    finally:
        rig.close()

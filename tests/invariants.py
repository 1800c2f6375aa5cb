"""The fault suite's invariant checker.

Every member process appends what its handler did to one events file (tests/proc.py):
``start``/``stop`` when start()/stop() ran, and a ``tick`` every few ms while the job does
work *and* ``job.is_owned()``. From that file this module checks, after a scenario:

(a) no key ever ran on two processes at once: the work (ticks) of one start-stop episode never
    overlaps the work of another process's episode, and, where no process was paused, a new
    episode starts only after the previous one's stop() (or the kill of its process);
(b) every admitted job runs exactly once at the end, on a live process;
(c) recovery: how long after a kill or signal each affected key started again elsewhere.
"""

from __future__ import annotations

import itertools
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Episode:
    key: str
    pid: int
    start: int
    end: int  # ns of stop(), of the kill, or -1 while still running
    first_tick: int  # -1 when it never ticked
    last_tick: int


def episodes(events: Path, killed: dict[int, int]) -> list[Episode]:
    """One episode per start() of a key on a process, with its end and its ticks."""
    lines = [ln.split(" ", 3) for ln in complete_lines(events)]
    lines.sort(key=lambda parts: int(parts[0]))
    current: dict[tuple[str, int], list[int]] = {}
    done: list[Episode] = []
    for ns_s, pid_s, event, key in lines:
        ns, pid = int(ns_s), int(pid_s)
        ref = (key, pid)
        if event == "start":
            current[ref] = [ns, -1, -1]
        elif event == "tick" and ref in current:
            state = current[ref]
            if state[1] == -1:
                state[1] = ns
            state[2] = ns
        elif event == "stop" and ref in current:
            start, first, last = current.pop(ref)
            done.append(Episode(key, pid, start, ns, first, last))
    for (key, pid), (start, first, last) in current.items():
        done.append(Episode(key, pid, start, killed.get(pid, -1), first, last))
    return done


def complete_lines(events: Path) -> list[str]:
    """The lines written so far; a line still being appended (no newline yet) is left out."""
    text = events.read_text() if events.exists() else ""
    return text[: text.rfind("\n") + 1].splitlines()


def check_no_overlap(eps: list[Episode], strict: bool = True) -> None:
    """(a): ``strict`` also requires stop()-before-start() between processes; a paused
    process's stop() is recorded only after it resumed, so pause scenarios check work only."""
    by_key: dict[str, list[Episode]] = defaultdict(list)
    for ep in eps:
        by_key[ep.key].append(ep)
    for key, group in by_key.items():
        worked = sorted((e for e in group if e.first_tick != -1), key=lambda e: e.first_tick)
        for a, b in itertools.pairwise(worked):
            if a.pid != b.pid:
                assert a.last_tick < b.first_tick, f"{key}: work on {a.pid} and {b.pid} overlaps"
        if strict:
            ordered = sorted(group, key=lambda e: e.start)
            for a, b in itertools.pairwise(ordered):
                assert a.end != -1 and a.end <= b.start, f"{key}: {a.pid} and {b.pid} at once"


def running_at_end(eps: list[Episode]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for ep in eps:
        if ep.end == -1:
            out[ep.key].append(ep.pid)
    return out


def runs_exactly_once(events: Path, keys: list[str], killed: dict[int, int]) -> bool:
    """(b), as a condition to wait for."""
    now = running_at_end(episodes(events, killed))
    return all(len(now.get(k, [])) == 1 for k in keys) and set(now) <= set(keys)


def unsettled(events: Path, keys: list[str], killed: dict[int, int]) -> str:
    """What keeps (b) from holding, for a failure message."""
    now = running_at_end(episodes(events, killed))
    bad = {k: now.get(k, []) for k in keys if len(now.get(k, [])) != 1}
    extra = sorted(set(now) - set(keys))
    return f"keys not running exactly once (key: pids): {dict(list(bad.items())[:10])}; " + (
        f"running but not admitted: {extra[:10]}"
    )


def recovery_seconds(eps: list[Episode], since_ns: int, keys: set[str]) -> list[float]:
    """(c): for each key, how long after ``since_ns`` it started again (first start after)."""
    out = []
    for key in keys:
        starts = [e.start for e in eps if e.key == key and e.start > since_ns]
        assert starts, f"{key} never started again"
        out.append((min(starts) - since_ns) / 1e9)
    return out


def keys_on(eps: list[Episode], pid: int) -> set[str]:
    return {e.key for e in eps if e.pid == pid and e.end == -1}


def summary(name: str, seconds: list[float]) -> str:
    if not seconds:
        return f"{name}: no keys"
    return (
        f"{name}: {len(seconds)} keys, median {statistics.median(seconds):.3f}s, "
        f"max {max(seconds):.3f}s"
    )


def events_of(events: Path, kind: str) -> list[tuple[int, int, str]]:
    """(ns, pid, subject) of every ``kind`` line, in time order."""
    out = []
    for line in complete_lines(events):
        ns, pid, event, subject = line.split(" ", 3)
        if event == kind:
            out.append((int(ns), int(pid), subject))
    return sorted(out)


def most_at_once(eps: list[Episode]) -> dict[int, int]:
    """The most jobs each process ran at the same time (from start() to stop() or the kill)."""
    edges: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for ep in eps:
        edges[ep.pid] += [(ep.start, 1), (ep.end if ep.end != -1 else 2**63, -1)]
    out = {}
    for pid, changes in edges.items():
        level = peak = 0
        for _, step in sorted(changes, key=lambda c: (c[0], c[1])):  # a stop before a start
            level += step
            peak = max(peak, level)
        out[pid] = peak
    return out

"""msgpack decoding of what the Lua scripts store and return: job records, worker records,
job infos, messages.

Records and messages are packed by Redis's Lua ``cmsgpack``, which writes every Lua string as
msgpack *str*, including binary payloads; so everything is unpacked with ``raw=True`` and the
text fields are decoded here. A value that does not decode raises :class:`CorruptEntryError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast, get_args

import msgpack

from ._types import JobInfo, JobState, from_ms

_STATES = frozenset(get_args(JobState))


class CorruptEntryError(Exception):
    """An entry in Redis is not what redpool wrote; callers log it and skip it."""


@dataclass(frozen=True, slots=True)
class JobRecord:
    payload: bytes
    created_ms: int
    dispatcher: str
    worker: str
    state: str
    epoch: int


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    created_ms: int
    host: str | None
    pid: int | None
    capacity: int | None = None  # most jobs at once; None: unbounded


@dataclass(frozen=True, slots=True)
class Message:
    """A message in a node inbox or in the pool's event stream."""

    kind: str
    fields: tuple[Any, ...]


def _unpack(raw: bytes) -> Any:
    try:
        return msgpack.unpackb(raw, raw=True, strict_map_key=False)
    except Exception as exc:
        raise CorruptEntryError(f"not msgpack: {raw[:40]!r}") from exc


def text(value: Any) -> str:
    """A text field of something Lua packed (strings arrive as bytes, numbers as numbers)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (int, float)):
        return str(int(value))
    raise CorruptEntryError(f"expected text, got {value!r}")


def decode_record(raw: bytes) -> JobRecord:
    rec = _unpack(raw)
    try:
        return JobRecord(
            payload=bytes(rec[b"p"]),
            created_ms=int(rec[b"c"]),
            dispatcher=text(rec[b"d"]),
            worker=text(rec[b"w"]),
            state=text(rec[b"s"]),
            epoch=int(rec[b"e"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptEntryError(f"not a job record: {rec!r}") from exc


def decode_worker(raw: bytes) -> WorkerRecord:
    """A worker record ``{c: created ms, h: host, p: pid, n: capacity}`` (older ones have
    only ``c``; ``n`` only when the worker is capped)."""
    rec = _unpack(raw)
    try:
        host, pid, cap = rec.get(b"h"), rec.get(b"p"), rec.get(b"n")
        return WorkerRecord(
            created_ms=int(rec[b"c"]),
            host=None if host is None else text(host),
            pid=None if pid is None else int(pid),
            capacity=None if cap is None else int(cap),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CorruptEntryError(f"not a worker record: {rec!r}") from exc


def decode_job_info(raw: bytes) -> JobInfo:
    """One entry of what ``lua/job_infos.lua`` returns."""
    rec = _unpack(raw)
    try:
        state = text(rec[b"s"])
        if state not in _STATES:
            raise ValueError(f"unknown state {state!r}")
        worker = text(rec[b"w"]) or None
        host, pid, started = rec.get(b"h"), rec.get(b"i"), rec.get(b"t")
        return JobInfo(
            key=text(rec[b"k"]),
            state=cast(JobState, state),
            worker_id=worker,
            node_id=worker.split(".", 1)[0] if worker else None,
            host=None if host is None else text(host),
            pid=None if pid is None else int(pid),
            epoch=int(rec[b"e"]),
            attempt=int(rec.get(b"a", 0)),
            created_at=from_ms(int(rec[b"c"])),
            started_at=None if started is None else from_ms(int(started)),
            payload_size=int(rec[b"n"]),
            dispatcher_id=text(rec[b"d"]),
        )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CorruptEntryError(f"not a job record: {rec!r}") from exc


def decode_message(fields: dict[bytes, bytes]) -> Message:
    """Decode a stream entry ``{m: msgpack [kind, ...]}``."""
    raw = fields.get(b"m")
    if raw is None:
        raise CorruptEntryError(f"stream entry without 'm': {fields!r}")
    msg = _unpack(raw)
    if not isinstance(msg, list) or not msg or not isinstance(msg[0], bytes):
        raise CorruptEntryError(f"not a message: {msg!r}")
    return Message(kind=msg[0].decode("ascii", "replace"), fields=tuple(msg[1:]))

"""Params and results on the wire: msgpack values, dataclasses (as maps), and pydantic or
msgspec models when present (found by duck typing). Never pickle: a client without the
task's code can still read a result, and a record cannot run code when it is decoded."""

from __future__ import annotations

import dataclasses
import hashlib
import traceback
from typing import Any

import msgpack

from ..errors import InvalidArgumentError, TaskProcessError


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)  # pydantic v2
    if callable(dump):
        return dump(mode="json")
    fields = getattr(type(value), "__struct_fields__", None)  # msgspec.Struct
    if isinstance(fields, tuple):
        return {name: getattr(value, name) for name in fields}
    # A set is refused rather than sent as a list: it would not come back a set, and its
    # order differs between processes, so one idempotency key would see "other params".
    hint = " (pass a sorted list)" if isinstance(value, (set, frozenset)) else ""
    raise TypeError(f"cannot encode a value of type {type(value).__name__}{hint}")


def encode(value: Any, what: str) -> bytes:
    """``value`` as msgpack; InvalidArgumentError naming ``what`` when it cannot be encoded."""
    try:
        return msgpack.packb(value, default=_plain, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidArgumentError(
            f"{what} must be msgpack values (str, int, float, bool, None, bytes, lists, dicts), "
            f"dataclasses or pydantic/msgspec models: {exc}"
        ) from exc


def encode_result(value: Any, task: str, limit: int) -> bytes:
    """A run's result as msgpack, at most ``limit`` bytes (the task's max_result_size)."""
    raw = encode(value, f"the result of {task}")
    if len(raw) > limit:
        raise InvalidArgumentError(
            f"the result of {task} is {len(raw)} bytes encoded, over its "
            f"max_result_size={limit}; store large results elsewhere and "
            "return a reference, or raise max_result_size on the task"
        )
    return raw


def decode(raw: bytes, into: Any = None) -> Any:
    """The value in ``raw``; built into ``into`` when that is a dataclass or model class."""
    value = msgpack.unpackb(raw, raw=False) if raw else None
    if into is None or value is None or not isinstance(into, type):
        return value
    if dataclasses.is_dataclass(into) and isinstance(value, dict):
        return into(**value)
    validate = getattr(into, "model_validate", None)  # pydantic v2
    if callable(validate):
        return validate(value)
    if isinstance(getattr(into, "__struct_fields__", None), tuple) and isinstance(value, dict):
        return into(**value)
    return value


def fingerprint(task: str, params: bytes) -> str:
    """What an idempotency key remembers of a submission, to tell a replay from a conflict."""
    return hashlib.sha1(task.encode() + b"\0" + params).hexdigest()


def describe(exc: BaseException) -> dict[str, str]:
    """What a run's error record keeps of ``exc``: its type, message and traceback (the last
    8 KiB); for an error raised in a child process, the child's."""
    if isinstance(exc, TaskProcessError) and exc.child_traceback:
        return {"type": exc.error_type, "message": exc.message, "tb": exc.child_traceback}
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-8192:]
    return {"type": type(exc).__name__, "message": str(exc), "tb": tb}

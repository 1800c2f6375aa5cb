"""Params and results on the wire: msgpack values, dataclasses (as maps), and pydantic or
msgspec models when present (found by duck typing). Never pickle: a client without the
task's code can still read a result, and a record cannot run code when it is decoded."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import msgpack

from ..errors import InvalidArgumentError


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

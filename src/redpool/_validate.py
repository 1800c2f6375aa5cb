"""Checks of what users pass in: each raises InvalidArgumentError with what to fix."""

from __future__ import annotations

from .errors import InvalidArgumentError

MAX_KEY_BYTES = 1024


def check_key(key: object) -> str:
    """A key Redis can store as sent (UTF-8) and that stays cheap to send in every message."""
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError(f"job key must be a non-empty str, got {key!r}")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:
        # Checked here, before batching: one bad key must not fail the others of its batch.
        raise InvalidArgumentError(
            f"job key {key!r} is not valid Unicode text ({exc.reason}); use a str that "
            "encodes as UTF-8"
        ) from None
    if size > MAX_KEY_BYTES:
        raise InvalidArgumentError(
            f"job key is {size} bytes in UTF-8, over the limit of {MAX_KEY_BYTES}; use a "
            "shorter key (a hash of a long one, for example)"
        )
    return key


def check_payload(payload: object, limit: int) -> bytes:
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise InvalidArgumentError(f"payload must be bytes, got {type(payload).__name__}")
    data = bytes(payload)
    if len(data) > limit:
        raise InvalidArgumentError(
            f"payload is {len(data)} bytes, over max_payload_size={limit}; store large data "
            "elsewhere and pass a reference"
        )
    return data


def check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"{what} must be a non-empty str, got {name!r}")
    return name


def interval_ms(interval: object) -> int:
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
        raise InvalidArgumentError(f"interval must be a positive number of seconds: {interval!r}")
    return max(1, round(interval * 1000))


def check_capacity(capacity: object) -> int | None:
    if capacity is None:
        return None
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise InvalidArgumentError(
            f"capacity must be a positive int (most jobs at once) or None, got {capacity!r}"
        )
    return capacity


def check_handler(handler: object) -> None:
    if isinstance(handler, type):
        raise InvalidArgumentError(
            f"handler must be an instance, got the class {handler.__name__}; pass "
            f"{handler.__name__}() (one instance per worker)"
        )
    if not callable(getattr(handler, "start", None)) or not callable(
        getattr(handler, "stop", None)
    ):
        raise InvalidArgumentError("handler must have start(job) and stop(key) methods")

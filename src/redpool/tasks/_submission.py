"""A submit in its stored form: options resolved once (submit > task > registry) and
validated, and what an admission means for the caller (a handle, or the error)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from .._validate import check_key
from ..errors import (
    IdempotencyConflictError,
    InvalidArgumentError,
    JobExistsError,
    PoolError,
    QueueFullError,
)
from ._codec import encode, fingerprint
from ._handle import JobHandle
from ._registry import UNSET, Retry, Task, seconds
from ._runtime import TaskLayer
from ._scripts import Admission, Submission

DAY = 86_400.0


def admitted(
    layer: TaskLayer, job: Submission, result_type: Any, admission: Admission
) -> JobHandle[Any] | PoolError:
    """The handle an admission gives the caller, or the error that refused the job."""
    if admission.outcome == "conflict":
        return IdempotencyConflictError(job.idempotency_key, admission.key)
    if admission.outcome == "full":
        return QueueFullError(
            f"queue {job.queue!r} (or the key's own queue) has max_queued jobs waiting; retry "
            "later or raise it with configure_queue()"
        )
    existing = admission.outcome not in ("ok", "idem") or (
        admission.outcome == "idem" and not job.auto_idempotency
    )
    handle: JobHandle[Any] = JobHandle(
        layer, admission.key, result_type, existing, admission.generation
    )
    if admission.outcome == "exists":
        return JobExistsError(job.key, handle)
    if admission.outcome == "ok" and job.delay_ms >= 0:
        layer.due_in(job.delay_ms / 1000)
    return handle


def submission(
    task: Task[Any, Any] | str,
    params: Any,
    key: str | None,
    queue: str | None,
    priority: int,
    delay: float | timedelta | None,
    at: datetime | None,
    expires: float | timedelta | datetime | None,
    timeout: float | timedelta | None,
    retry: Retry | None,
    idempotency_key: str | None,
    idempotency_ttl: float | timedelta | None,
    if_active: str,
    tenant: str | None,
    labels: Mapping[str, str] | None,
) -> tuple[Submission, Any]:
    """The stored form of a submit: options resolved once (submit > task > registry)."""
    if isinstance(task, Task):
        name, default_queue, result_type = task.name, task.queue, task.result_type
        task_timeout, task_retry, stall = task.timeout, task.retry, task.stall_timeout
    elif isinstance(task, str) and task:
        name, default_queue, result_type = task, "default", None
        task_timeout, task_retry, stall = None, Retry(), None
    else:
        raise InvalidArgumentError(f"task must be a Task or a task name, got {task!r}")
    if if_active not in ("reject", "return", "queue", "replace"):
        raise InvalidArgumentError(
            f"if_active must be 'reject', 'return', 'queue' or 'replace', got {if_active!r}"
        )
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise InvalidArgumentError(f"priority must be an int 0..9, got {priority!r}")
    if retry is not UNSET and retry is not None:
        if not isinstance(retry, Retry):
            raise InvalidArgumentError(f"retry must be a redpool.Retry, got {retry!r}")
        if retry.retry is not None:
            raise InvalidArgumentError(
                "a retry predicate is code: give it in the task's definition, not at submit"
            )
    policy = task_retry if retry is UNSET or retry is None else retry
    run_timeout = task_timeout if timeout is UNSET else seconds(timeout, "timeout")
    delay_s = seconds(delay, "delay") if delay else None
    if at is not None:
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise InvalidArgumentError(f"at must be an aware datetime, got {at!r}")
        delay_s = max(0.0, (at - datetime.now(timezone.utc)).total_seconds())
    if labels is not None and not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise InvalidArgumentError("labels must map str to str")
    if isinstance(expires, datetime):
        if expires.tzinfo is None:
            raise InvalidArgumentError(f"expires must be an aware datetime, got {expires!r}")
        expires = max(0.001, (expires - datetime.now(timezone.utc)).total_seconds())
    expires_s = seconds(expires, "expires")
    payload = encode(params, "params")
    options: dict[str, Any] = {
        "to": 0 if run_timeout is None else round(run_timeout * 1000),
        "sl": 0 if stall is None else round(stall * 1000),
        "ma": policy.max_attempts or 0,
        "mi": 3,
        "rs": policy.wait_spec(),
        "kp": round(DAY * 1000),
        "kf": round(7 * DAY * 1000),
        "pri": priority,
        "tn": tenant or "",
        "lb": dict(labels or {}),
    }
    if expires_s is not None:
        options["x"] = round(expires_s * 1000)
    ttl = seconds(idempotency_ttl, "idempotency_ttl") or DAY
    job = Submission(
        key=check_key(key) if key is not None else f"task:{uuid.uuid4().hex}",
        task=name,
        queue=check_key(queue or default_queue),
        params=payload,
        options=options,
        delay_ms=-1 if delay_s is None else round(delay_s * 1000),
        idempotency_key=check_key(idempotency_key) if idempotency_key else "",
        fingerprint=fingerprint(name, payload),
        idempotency_ttl_ms=round(ttl * 1000),
        if_active=if_active,
    )
    return job, result_type

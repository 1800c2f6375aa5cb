"""A submit in its stored form: options resolved once (submit > task > registry) and
validated, and what an admission means for the caller (a handle, or the error)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
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
from ._registry import MAX_INTERRUPTS, UNSET, Retry, Task, check_max_interrupts, seconds
from ._runtime import TaskLayer
from ._scripts import Admission, Admit

DAY = 86_400.0


def admitted(
    layer: TaskLayer, job: Admit, result_type: Any, admission: Admission, batch: int = 1
) -> JobHandle[Any] | PoolError:
    """The handle an admission gives the caller, or the error that refused the job (then
    none of the ``batch`` jobs of its call was admitted)."""
    if admission.outcome == "conflict":
        return IdempotencyConflictError(job.idempotency_key, admission.key)
    if admission.outcome == "full":
        where = (
            f"queue {job.queue!r}"
            if admission.status == "queue"
            else f"the FIFO of key {job.key!r} (bounded by queue {job.queue!r}'s max_queued)"
        )
        admitted_none = f"; none of the {batch} jobs of this call was admitted" if batch > 1 else ""
        return QueueFullError(
            f"{where} has {admission.generation} jobs waiting and would exceed its max_queued"
            f"{admitted_none}; retry later or raise it with configure_queue()"
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


@dataclass(frozen=True)
class Submission:
    """One job of ``node.submit_many``: the arguments of ``node.submit``, per job."""

    task: Task[Any, Any] | str
    params: Any = None
    key: str | None = None
    queue: str | None = None
    priority: int = 0
    delay: float | timedelta | None = None
    at: datetime | None = None
    expires: float | timedelta | datetime | None = None
    timeout: float | timedelta | None = UNSET
    retry: Retry | None = UNSET
    max_interrupts: int = UNSET
    idempotency_key: str | None = None
    idempotency_ttl: float | timedelta | None = None
    if_active: str = "reject"
    tenant: str | None = None
    labels: Mapping[str, str] | None = None
    keep: float | timedelta | None = None
    keep_failed: float | timedelta | None = None


def prepare(
    sub: Submission, max_params_size: int, node_keeps: tuple[float, float]
) -> tuple[Admit, Any]:
    """The stored form of a submit: options resolved once (submit > task > registry; keep
    times last from the submitting node's ``default_keep`` / ``default_keep_failed``) and
    checked; InvalidArgumentError for anything wrong, before anything is sent."""
    task = sub.task
    keeps = [
        seconds(sub.keep, "keep", zero=True),
        seconds(sub.keep_failed, "keep_failed", zero=True),
    ]
    if isinstance(task, Task):
        name, default_queue, result_type = task.name, task.queue, task.result_type
        task_timeout, task_retry = task.timeout, task.retry
        stall, task_interrupts = task.stall_timeout, task.max_interrupts
        task_keeps = [task.keep, task.keep_failed]
    elif isinstance(task, str) and task:
        name, default_queue, result_type = task, "default", None
        task_timeout, task_retry, stall, task_interrupts = None, Retry(), None, MAX_INTERRUPTS
        task_keeps = [None, None]
    else:
        raise InvalidArgumentError(f"task must be a Task or a task name, got {task!r}")
    if sub.if_active not in ("reject", "return", "queue", "replace"):
        raise InvalidArgumentError(
            f"if_active must be 'reject', 'return', 'queue' or 'replace', got {sub.if_active!r}"
        )
    priority = sub.priority
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise InvalidArgumentError(f"priority must be an int 0..9 (9 first), got {priority!r}")
    retry = sub.retry
    if retry is not UNSET and retry is not None:
        if not isinstance(retry, Retry):
            raise InvalidArgumentError(f"retry must be a redpool.Retry, got {retry!r}")
        if retry.retry is not None:
            raise InvalidArgumentError(
                "a retry predicate is code: give it in the task's definition, not at submit"
            )
    policy = task_retry if retry is UNSET or retry is None else retry
    run_timeout = task_timeout if sub.timeout is UNSET else seconds(sub.timeout, "timeout")
    interrupts = (
        task_interrupts if sub.max_interrupts is UNSET else check_max_interrupts(sub.max_interrupts)
    )
    delay_s = seconds(sub.delay, "delay") if sub.delay else None
    at = sub.at
    if at is not None:
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise InvalidArgumentError(f"at must be an aware datetime, got {at!r}")
        delay_s = max(0.0, (at - datetime.now(timezone.utc)).total_seconds())
    labels = sub.labels
    if labels is not None and not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise InvalidArgumentError("labels must map str to str")
    expires = sub.expires
    if isinstance(expires, datetime):
        if expires.tzinfo is None:
            raise InvalidArgumentError(f"expires must be an aware datetime, got {expires!r}")
        expires = max(0.001, (expires - datetime.now(timezone.utc)).total_seconds())
    expires_s = seconds(expires, "expires")
    payload = encode(sub.params, "params")
    if len(payload) > max_params_size:
        raise InvalidArgumentError(
            f"params are {len(payload)} bytes encoded, over max_payload_size={max_params_size}; "
            "store large data elsewhere and pass a reference"
        )
    options: dict[str, Any] = {
        "to": 0 if run_timeout is None else round(run_timeout * 1000),
        "sl": 0 if stall is None else round(stall * 1000),
        "ma": policy.max_attempts or 0,
        "mi": interrupts,
        "rs": policy.wait_spec(),
        "kp": _resolved_ms(keeps[0], task_keeps[0], node_keeps[0]),
        "kf": _resolved_ms(keeps[1], task_keeps[1], node_keeps[1]),
        "pri": priority,
        "tn": sub.tenant or "",
        "lb": dict(labels or {}),
    }
    if expires_s is not None:
        options["x"] = round(expires_s * 1000)
    ttl = seconds(sub.idempotency_ttl, "idempotency_ttl") or DAY
    job = Admit(
        key=check_key(sub.key) if sub.key is not None else f"task:{uuid.uuid4().hex}",
        task=name,
        queue=check_key(sub.queue or default_queue),
        params=payload,
        options=options,
        delay_ms=-1 if delay_s is None else round(delay_s * 1000),
        idempotency_key=check_key(sub.idempotency_key) if sub.idempotency_key else "",
        fingerprint=fingerprint(name, payload),
        idempotency_ttl_ms=round(ttl * 1000),
        if_active=sub.if_active,
    )
    return job, result_type


def check_in_batch(job: Admit, keys: set[str], fingerprints: dict[str, str]) -> None:
    """A batch job that could only be refused by an earlier one of its batch is bad input:
    a key given again with if_active="reject", or an idempotency key with other params."""
    if job.key in keys and job.if_active == "reject":
        raise InvalidArgumentError(
            f"key {job.key!r} is given twice in the batch; give the later ones "
            'if_active="queue" (run after it), "replace" or "return"'
        )
    keys.add(job.key)
    if job.idempotency_key:
        known = fingerprints.setdefault(job.idempotency_key, job.fingerprint)
        if known != job.fingerprint:
            raise InvalidArgumentError(
                f"idempotency key {job.idempotency_key!r} is given twice in the batch with "
                "other params"
            )


def _resolved_ms(*levels: float | None) -> int:
    """The first level that sets a value (the node's always does), in ms."""
    return round(next(v for v in levels if v is not None) * 1000)

"""redpool's exceptions: every error is a :class:`PoolError`; ``Requeue``, ``ScheduleStop``,
``Skip``, ``RetryLater`` and ``Fail`` are signals that user code raises, not errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .tasks._status import JobInfo

DEFAULT_MAX_ATTEMPTS = 5  # starts of a job whose start() keeps raising Requeue (as arq)


class PoolError(Exception):
    """Base class of every error redpool raises."""


class InvalidArgumentError(PoolError, ValueError):
    """An argument has the wrong type or value; fix the call."""


class JobExistsError(PoolError):
    """A job with this key already exists somewhere in the pool, whatever its state. For a
    task, ``handle`` is the active job's handle (``if_active="return"`` returns it instead)."""

    def __init__(self, key: str, handle: Any = None) -> None:
        super().__init__(
            f"job {key!r} already exists in the pool; stop it first or use another key"
        )
        self.key = key
        self.handle = handle


class JobNotFoundError(PoolError):
    """No job with this key exists in the pool."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no job {key!r} in the pool")
        self.key = key


class JobStartError(PoolError):
    """The owning worker's ``start()`` raised; the key is free again."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"job {key!r} failed to start: {message}")
        self.key = key
        self.message = message


class QueueFullError(PoolError):
    """A bounded queue is full: ``max_queued_jobs`` jobs already wait for a worker (the pool
    has none), or too many notifications wait for one job's owner. Retry later."""


class DispatchTimeoutError(PoolError):
    """No worker started the job in time; it was withdrawn and will not start later.
    ``reason`` says why: no live worker took it, or its owner did not finish ``start()``."""

    def __init__(self, key: str, timeout: float, reason: str) -> None:
        super().__init__(
            f"job {key!r} was not started within {timeout:g}s and was withdrawn: {reason}"
        )
        self.key = key
        self.reason = reason


class PoolClosedError(PoolError):
    """This node was closed (or its pool shut down); create a new node."""


class PoolShuttingDownError(PoolClosedError):
    """The pool is shutting down: it accepts no new jobs or workers."""


class RedisUnavailableError(PoolError):
    """Redis could not be reached in time; the operation did not take effect (or is unknown)."""


class RedisConfigError(InvalidArgumentError):
    """Redis refused redpool for a reason no retry fixes: a wrong password, an ACL user
    without a permission redpool needs, a db the server lacks, a server older than 7.0."""


class RedisFullError(PoolError):
    """Redis is out of memory (``maxmemory`` with ``noeviction``): the operation was refused
    and took no effect; running jobs keep running."""


class EventLoopError(PoolError):
    """A node was used from an event loop other than the one it was created in."""


class ScheduleStop(Exception):
    """Raised by a producer's ``plan()`` to end its schedule on every node."""


class Requeue(Exception):
    """Raised by a handler's ``start()`` to have the job started again later.

    The next attempt comes after ``delay`` seconds, or by default after 0.5 s, doubling per
    attempt up to 30 s (on the Redis clock). A job gets at most ``max_attempts`` starts in
    all, the first included; when the last one raises ``Requeue`` too, the job ends (its key
    is free) and a dispatcher still waiting gets :class:`JobStartError`. The handler decides,
    per raise, because it knows the failure: a rate limit knows its retry-after, a flaky
    dependency deserves more attempts than a bad payload.
    """

    def __init__(self, delay: float | None = None, max_attempts: int = DEFAULT_MAX_ATTEMPTS):
        if delay is not None and (
            isinstance(delay, bool)
            or not isinstance(delay, (int, float))
            or not 0 <= delay < float("inf")
        ):
            raise InvalidArgumentError(f"Requeue delay must be seconds >= 0 or None, got {delay!r}")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise InvalidArgumentError(
                f"Requeue max_attempts must be an int >= 1, got {max_attempts!r}"
            )
        super().__init__(delay, max_attempts)
        self.delay = delay
        self.max_attempts = max_attempts


class StopTimeoutError(PoolError):
    """The job's owner did not confirm the stop in time; the stop stays requested."""

    def __init__(self, key: str, timeout: float) -> None:
        super().__init__(
            f"job {key!r} was not confirmed stopped within {timeout:g}s; it will still be "
            "stopped when its owner or its lease allows"
        )
        self.key = key


class JobUnsuccessfulError(PoolError):
    """The task job ended without a result; ``info`` says how (status, error, attempts)."""

    def __init__(self, info: JobInfo) -> None:
        error = f": {info.error.type}: {info.error.message}" if info.error else ""
        super().__init__(f"task job {info.key!r} ended {info.status.value}{error}")
        self.info = info


class JobFailedError(JobUnsuccessfulError):
    """The task raised (on its last attempt); ``info.error`` has its type and message."""


class JobTimedOutError(JobUnsuccessfulError):
    """The task ran past its timeout and was stopped (on its last attempt)."""


class JobCanceledError(JobUnsuccessfulError):
    """The task job was canceled before it finished."""


class JobSkippedError(JobUnsuccessfulError):
    """The task raised :class:`Skip`."""


class WaitTimeoutError(PoolError, TimeoutError):
    """A wait for a task job (``result``, ``wait``, ``cancel``) ran out of time; the job
    itself is left alone."""


class InvalidTransitionError(PoolError):
    """The action is not allowed in the job's current status."""

    def __init__(self, key: str, status: str, action: str) -> None:
        super().__init__(f"cannot {action} task job {key!r}: it is {status}")
        self.key = key
        self.status = status
        self.action = action


class NotSuspendableError(InvalidTransitionError):
    """``suspend()`` of a running job whose task was not declared ``suspendable=True``."""

    def __init__(self, key: str, status: str) -> None:
        PoolError.__init__(
            self,
            f"cannot suspend task job {key!r}: its task is not suspendable; declare it with "
            "@tasks.task(suspendable=True) (and checkpoint its state), or pause or cancel it",
        )
        self.key = key
        self.status = status
        self.action = "suspend"


class PauseTimeoutError(PoolError, TimeoutError):
    """The run did not acknowledge a pause (at a ``run.checkpoint()``) within
    ``ack_timeout``; the pause was withdrawn and the run goes on."""

    def __init__(self, key: str, timeout: float) -> None:
        super().__init__(
            f"task job {key!r} did not reach a checkpoint within {timeout:g}s to pause; it "
            "goes on running (call run.checkpoint() more often, or pause with a longer "
            "ack_timeout)"
        )
        self.key = key
        self.timeout = timeout


class HoldCycleError(PoolError):
    """``run.hold(target)`` was refused: waiting for ``target`` would close a cycle of holds
    and waits (``chain``: the keys from the one waited on back to the holder), so none of
    them could ever go on. Nothing was held."""

    def __init__(self, key: str, target: str, chain: list[str], too_deep: bool = False) -> None:
        path = " -> ".join(repr(k) for k in chain)
        why = (
            f"the chain of holds and waits from it is longer than {len(chain)} links"
            if too_deep
            else f"it waits, through {path}, for this run"
        )
        super().__init__(
            f"the run of {key!r} cannot hold {target!r}: {why}; take holds in one order "
            "everywhere, or release one before waiting for another"
        )
        self.key = key
        self.target = target
        self.chain = chain


class IdempotencyConflictError(PoolError):
    """The idempotency key was used before with other params: pick another key."""

    def __init__(self, idempotency_key: str, key: str) -> None:
        super().__init__(
            f"idempotency key {idempotency_key!r} was used for job {key!r} with other params; "
            "use a new idempotency key for new params"
        )
        self.idempotency_key = idempotency_key
        self.key = key


class UnknownTaskError(PoolError):
    """No task of this name is registered (on the worker that took the job, or locally)."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"no task named {name!r} is registered; register it with @tasks.task on every "
            "worker serving its queue"
        )
        self.name = name


class RunStoppedError(PoolError):
    """Raised in a sync task's thread once its run is canceled or timed out: by
    ``run.checkpoint()`` / ``run.progress()``, or as an async exception at the thread's next
    bytecode. Let it propagate: the job ends canceled / timed_out when the code returns."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(
            f"this run was stopped ({reason or 'canceled or timed out'}); let the error "
            "propagate so the task ends"
        )
        self.reason = reason


class TaskProcessError(PoolError):
    """A run with ``isolation="process"`` went wrong in its child process: the child died
    (the message gives its exit code or signal; retried by the task's policy), the task
    cannot be imported there (not retried), or the task raised: then ``error_type`` and
    ``child_traceback`` are the child's exception's (``on_failure`` hooks get this error)."""

    def __init__(
        self,
        message: str,
        error_type: str = "TaskProcessError",
        child_traceback: str = "",
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.child_traceback = child_traceback
        self.retryable = retryable  # the retry predicate's verdict (None: not asked yet)


class Skip(Exception):
    """Raised by a task to end its job as skipped (``reason`` is kept as its error)."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class RetryLater(Exception):
    """Raised by a task to run again after ``delay`` seconds (counts as an attempt)."""

    def __init__(self, delay: float = 0.0) -> None:
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not delay >= 0:
            raise InvalidArgumentError(f"RetryLater delay must be seconds >= 0, got {delay!r}")
        super().__init__(delay)
        self.delay = float(delay)


class Fail(Exception):
    """Raised by a task to fail its job now, without a retry."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

"""redpool's exceptions: every error is a :class:`PoolError`; ``Requeue`` and ``ScheduleStop``
are signals that user code raises, not errors."""

from __future__ import annotations


class PoolError(Exception):
    """Base class of every error redpool raises."""


class InvalidArgumentError(PoolError, ValueError):
    """An argument has the wrong type or value; fix the call."""


class JobExistsError(PoolError):
    """A job with this key already exists somewhere in the pool, whatever its state."""

    def __init__(self, key: str) -> None:
        super().__init__(
            f"job {key!r} already exists in the pool; stop it first or use another key"
        )
        self.key = key


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
    """``max_queued_jobs`` jobs are admitted but not started yet; retry later or add workers."""


class DispatchTimeoutError(PoolError):
    """No worker started the job in time; it was withdrawn and will not start later."""

    def __init__(self, key: str, timeout: float) -> None:
        super().__init__(
            f"job {key!r} was not started within {timeout:g}s and was withdrawn; "
            "check that the pool has live workers"
        )
        self.key = key


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
    """Raised by a handler's ``start()`` to ask for the job to be retried on another attempt."""


class StopTimeoutError(PoolError):
    """The job's owner did not confirm the stop in time; the stop stays requested."""

    def __init__(self, key: str, timeout: float) -> None:
        super().__init__(
            f"job {key!r} was not confirmed stopped within {timeout:g}s; it will still be "
            "stopped when its owner or its lease allows"
        )
        self.key = key

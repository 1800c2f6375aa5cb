"""The tasks layer: run-to-completion jobs on the pool (submit, results, retries, timeouts,
cancel, idempotency, capacity-aware placement), built on the pool's leases and fencing."""

from ._context import RunContext, SyncRunContext
from ._handle import JobHandle
from ._jobs import Jobs, JobStats, QueueStats, WorkerStats
from ._recurring import NextRunIn
from ._registry import Retry, Task, Tasks
from ._runner import TaskWorker
from ._schedule_handle import ScheduleHandle, ScheduleInfo, ScheduleMetrics
from ._status import ErrorInfo, JobInfo, JobMetrics, Page, Progress, RunInfo, Status
from ._submission import Submission

__all__ = [
    "ErrorInfo",
    "JobHandle",
    "JobInfo",
    "JobMetrics",
    "JobStats",
    "Jobs",
    "NextRunIn",
    "Page",
    "Progress",
    "QueueStats",
    "Retry",
    "RunContext",
    "RunInfo",
    "ScheduleHandle",
    "ScheduleInfo",
    "ScheduleMetrics",
    "Status",
    "Submission",
    "SyncRunContext",
    "Task",
    "TaskWorker",
    "Tasks",
    "WorkerStats",
]

from .heartbeat import Heartbeat, TickGuard
from .task import Task, TaskAttempt, TaskDependency, TaskQuerySet
from .token import ApiToken
from .worker import Worker, WorkerQuerySet

__all__ = [
    "ApiToken",
    "Heartbeat",
    "Task",
    "TaskAttempt",
    "TaskDependency",
    "TaskQuerySet",
    "TickGuard",
    "Worker",
    "WorkerQuerySet",
]

from .heartbeat import Heartbeat, TickGuard
from .task import Task, TaskAttempt, TaskQuerySet
from .worker import Worker, WorkerQuerySet

__all__ = [
    "Heartbeat",
    "Task",
    "TaskAttempt",
    "TaskQuerySet",
    "TickGuard",
    "Worker",
    "WorkerQuerySet",
]

from .heartbeat import Heartbeat, TickGuard
from .learning import LearningMark, MemoryProfile
from .node import Node
from .queue import PausedQueue
from .run import LockKey, Run, RunState
from .sample import ALL_QUEUES, QueueSample, WorkerSample
from .task import Task, TaskAttempt, TaskDependency, TaskQuerySet
from .token import ApiToken
from .worker import Worker, WorkerQuerySet

__all__ = [
    "ALL_QUEUES",
    "ApiToken",
    "Heartbeat",
    "LearningMark",
    "LockKey",
    "MemoryProfile",
    "Node",
    "PausedQueue",
    "QueueSample",
    "Run",
    "RunState",
    "Task",
    "TaskAttempt",
    "TaskDependency",
    "TaskQuerySet",
    "TickGuard",
    "Worker",
    "WorkerQuerySet",
    "WorkerSample",
]

"""The state machines of workers and tasks, and the one function that moves between states."""

from __future__ import annotations

from typing import Any

from django.db import models

from .exceptions import IllegalTransition


class WorkerState(models.TextChoices):
    STARTING = "STARTING", "Starting"
    RUNNING = "RUNNING", "Running"
    DRAINING = "DRAINING", "Draining"
    DEAD = "DEAD", "Dead"
    FAILED = "FAILED", "Failed"


class TaskState(models.TextChoices):
    WAITING = "WAITING", "Waiting"
    QUEUED = "QUEUED", "Queued"
    RUNNING = "RUNNING", "Running"
    SUCCEEDED = "SUCCEEDED", "Succeeded"
    FAILED = "FAILED", "Failed"
    CANCELLED = "CANCELLED", "Cancelled"


class Outcome(models.TextChoices):
    """How one attempt of a task ended."""

    SUCCEEDED = "SUCCEEDED", "Succeeded"
    ERROR = "ERROR", "Raised an error"
    TIMED_OUT = "TIMED_OUT", "Timed out"
    CANCELLED = "CANCELLED", "Cancelled"
    ABORTED = "ABORTED", "Worker aborted"
    CRASHED = "CRASHED", "Process crashed"
    WORKER_LOST = "WORKER_LOST", "Worker lost"
    LEASE_EXPIRED = "LEASE_EXPIRED", "Lease expired"
    MEMORY_LIMIT = "MEMORY_LIMIT", "Memory limit exceeded"
    OOM_KILLED = "OOM_KILLED", "Killed by the OOM killer"


WORKER_TRANSITIONS: dict[str, frozenset[str]] = {
    WorkerState.STARTING: frozenset({WorkerState.RUNNING, WorkerState.FAILED, WorkerState.DEAD}),
    WorkerState.RUNNING: frozenset({WorkerState.DRAINING, WorkerState.DEAD, WorkerState.FAILED}),
    # DRAINING -> RUNNING: an operator cancelled the drain before the worker stopped.
    WorkerState.DRAINING: frozenset({WorkerState.RUNNING, WorkerState.DEAD, WorkerState.FAILED}),
    WorkerState.DEAD: frozenset(),
    WorkerState.FAILED: frozenset(),
}

TASK_TRANSITIONS: dict[str, frozenset[str]] = {
    TaskState.WAITING: frozenset({TaskState.QUEUED, TaskState.CANCELLED, TaskState.FAILED}),
    TaskState.QUEUED: frozenset({TaskState.RUNNING, TaskState.CANCELLED, TaskState.WAITING}),
    TaskState.RUNNING: frozenset(
        {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.QUEUED}
    ),
    # Finished tasks move again only through an operator's retry.
    TaskState.SUCCEEDED: frozenset({TaskState.QUEUED, TaskState.WAITING}),
    TaskState.FAILED: frozenset({TaskState.QUEUED, TaskState.WAITING}),
    TaskState.CANCELLED: frozenset({TaskState.QUEUED, TaskState.WAITING}),
}

ACTIVE_WORKER_STATES = (WorkerState.STARTING, WorkerState.RUNNING, WorkerState.DRAINING)
FINISHED_TASK_STATES = (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)


def sources(table: dict[str, frozenset[str]], target: str) -> list[str]:
    """Every state from which ``target`` may be reached (for conditional updates)."""
    return [state for state, targets in table.items() if target in targets]


def check(table: dict[str, frozenset[str]], current: str, target: str) -> None:
    """Refuse a move the state machine does not allow."""
    if target not in table[current]:
        raise IllegalTransition(f"{current} -> {target} is not allowed")


def table_for(queryset: models.QuerySet[Any]) -> dict[str, frozenset[str]]:
    name = queryset.model._meta.model_name
    if name == "task":
        return TASK_TRANSITIONS
    if name == "worker":
        return WORKER_TRANSITIONS
    raise TypeError(f"{queryset.model.__name__} has no state machine")


def move(queryset: models.QuerySet[Any], target: str, **fields: Any) -> int:
    """The one transition function: update only rows whose state may move to ``target``.

    Raw SQL on the hot path does not call it, but declares its moves with :func:`moves`,
    which checks them against the same table when the module is imported.
    """
    allowed = sources(table_for(queryset), target)
    return queryset.filter(state__in=allowed).update(state=target, **fields)


def moves(table: dict[str, frozenset[str]], *pairs: tuple[str, str]) -> None:
    """Declare the moves a raw statement makes; refuse any the state machine forbids."""
    for current, target in pairs:
        check(table, current, target)

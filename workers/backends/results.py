"""Crucible's task rows seen as Django TaskResults: status, return value, errors, attempts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.tasks import Task as DjangoTask
from django.tasks import TaskResult, TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.utils.module_loading import import_string

from ..models import Task, TaskAttempt
from ..states import Outcome, TaskState
from . import errors

MAX_ID = 2**63 - 1

STATUS: dict[str, TaskResultStatus] = {
    TaskState.WAITING: TaskResultStatus.READY,
    TaskState.QUEUED: TaskResultStatus.READY,
    TaskState.RUNNING: TaskResultStatus.RUNNING,
    TaskState.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    TaskState.FAILED: TaskResultStatus.FAILED,
    TaskState.CANCELLED: TaskResultStatus.FAILED,
}

# Attempts that ended without a Python exception from the task, and the class reported.
NO_EXCEPTION: dict[str, type[BaseException]] = {
    Outcome.TIMED_OUT: TimeoutError,
    Outcome.CANCELLED: errors.TaskCancelled,
    Outcome.ABORTED: errors.WorkerAborted,
    Outcome.CRASHED: errors.TaskCrashed,
    Outcome.WORKER_LOST: errors.WorkerLost,
    Outcome.LEASE_EXPIRED: errors.LeaseExpired,
}


def parse_id(result_id: object) -> int:
    """The task id a result id names; a malformed id names no result."""
    text = str(result_id)
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_ID:
        raise TaskResultDoesNotExist(result_id)
    return int(text)


def _attempts(task_id: int, up_to: int) -> Any:
    return TaskAttempt.objects.filter(task_id=task_id, number__lte=up_to).order_by("number")


def load(task_id: int) -> tuple[Task, list[TaskAttempt]]:
    """The task row, then its attempts up to the one the row names (a consistent view)."""
    row = Task.objects.filter(pk=task_id).first()
    if row is None:
        raise TaskResultDoesNotExist(str(task_id))
    return row, list(_attempts(task_id, row.attempt))


async def aload(task_id: int) -> tuple[Task, list[TaskAttempt]]:
    row = await Task.objects.filter(pk=task_id).afirst()
    if row is None:
        raise TaskResultDoesNotExist(str(task_id))
    return row, [attempt async for attempt in _attempts(task_id, row.attempt)]


def task_for(row: Task, alias: str) -> DjangoTask[..., Any]:
    """The ``@task`` a row runs, as enqueued (priority, queue) on the backend ``alias``."""
    try:
        target = import_string(row.func_path)
    except ImportError as exc:
        raise TaskResultDoesNotExist(f"{row.pk}: cannot import {row.func_path!r}") from exc
    if not isinstance(target, DjangoTask):
        raise TaskResultDoesNotExist(f"{row.pk}: {row.func_path!r} is not a Django task")
    try:
        return target.using(priority=row.priority, queue_name=row.queue, backend=alias)
    except InvalidTask as exc:
        raise TaskResultDoesNotExist(f"{row.pk}: not a task of backend {alias!r}: {exc}") from exc


def build[**P, R](task: DjangoTask[P, R], row: Task, attempts: Sequence[TaskAttempt],
                  alias: str) -> TaskResult[P, R]:
    """The TaskResult of ``row``; a running attempt counts among the attempts."""
    running = row.state == TaskState.RUNNING
    done = [a for a in attempts if a.number < row.attempt or not running]
    worker_ids = [_worker_id(a.worker_id, a.worker_label) for a in done]
    if running:
        worker_ids.append(_worker_id(row.worker_id, ""))
    result = TaskResult(
        task=task,
        id=str(row.pk),
        status=STATUS[row.state],
        enqueued_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        last_attempted_at=row.last_attempted_at,
        args=row.args,
        kwargs=row.kwargs,
        backend=alias,
        errors=[error_of(a) for a in done if a.outcome != Outcome.SUCCEEDED],
        worker_ids=worker_ids,
    )
    if row.state == TaskState.SUCCEEDED:
        object.__setattr__(result, "_return_value", row.result)
    return result


def queued[**P, R](task: DjangoTask[P, R], task_id: int, enqueued_at: datetime,
                   call: tuple[list[Any], dict[str, Any]], alias: str) -> TaskResult[P, R]:
    """The TaskResult of a task just enqueued (``build`` of its new row, without the row)."""
    return TaskResult(task=task, id=str(task_id), status=TaskResultStatus.READY,
                      enqueued_at=enqueued_at, started_at=None, finished_at=None,
                      last_attempted_at=None, args=call[0], kwargs=call[1], backend=alias,
                      errors=[], worker_ids=[])


def first_running[**P, R](task: DjangoTask[P, R], task_id: int, worker_id: int,
                          call: tuple[list[Any], dict[str, Any]],
                          moments: dict[str, datetime | None], *, alias: str
                          ) -> TaskResult[P, R]:
    """The TaskResult of a task's first attempt, now running (``build`` of its row with no
    earlier attempts, without the row): ``moments`` are the row's created_at, started_at
    and last_attempted_at, as the claim read them."""
    return TaskResult(task=task, id=str(task_id), status=TaskResultStatus.RUNNING,
                      enqueued_at=moments["created_at"], started_at=moments["started_at"],
                      finished_at=None, last_attempted_at=moments["last_attempted_at"],
                      args=call[0], kwargs=call[1], backend=alias, errors=[],
                      worker_ids=[_worker_id(worker_id, "")])


def _worker_id(worker_id: int | None, label: str) -> str:
    return label if worker_id is None else str(worker_id)


def error_of(attempt: TaskAttempt) -> TaskError:
    """The error of a failed attempt: what the task raised, or what ended it (NO_EXCEPTION)."""
    if attempt.outcome == Outcome.ERROR:
        path = attempt.exception_class or "builtins.Exception"
        return TaskError(exception_class_path=path, traceback=attempt.traceback or attempt.error)
    kind = NO_EXCEPTION.get(attempt.outcome, errors.AttemptFailed)
    return TaskError(
        exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
        traceback=f"{kind.__qualname__}: {attempt.error or attempt.get_outcome_display()}",
    )

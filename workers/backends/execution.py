"""A Django ``@task`` in the executor: its TaskContext, and Django's task_started/finished.

The signals are sent in the executor process, around the call, with the TaskResult of the
attempt being run. A receiver that raises is logged by Django and does not fail the task.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.dispatch import Signal
from django.tasks import Task as DjangoTask
from django.tasks import TaskContext, TaskResult, TaskResultStatus, task_backends
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import TaskError
from django.tasks.signals import task_finished, task_started
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from .. import context
from . import results
from .backend import CrucibleBackend

MOMENTS = frozenset({"created_at", "started_at", "last_attempted_at"})
Invoke = Callable[[Callable[..., Any], list[Any], dict[str, Any]], Any]


def django_task(func_path: str) -> DjangoTask[..., Any] | None:
    """The ``@task`` at ``func_path``; None for a plain function."""
    target = import_string(func_path)
    return target if isinstance(target, DjangoTask) else None


def run(task: DjangoTask[..., Any], args: list[Any], kwargs: dict[str, Any],
        invoke: Invoke, *, claimed: dict[str, Any] | None = None) -> Any:
    """Run one attempt of ``task`` through ``invoke``, between Django's task signals.
    ``claimed``: what the claim read of the task's row (priority, queue, its times)."""
    backend = _backend_for(task)
    result = _attempt_result(task, backend.alias, args, kwargs, claimed)
    _send(task_started, backend, result)
    call_args = [TaskContext(task_result=result), *args] if task.takes_context else args
    try:
        value = normalize_json(invoke(task.func, call_args, kwargs))
    except BaseException as exc:
        _finish(result, TaskResultStatus.FAILED)
        result.errors.append(_error(exc))
        _send(task_finished, backend, result)  # within `except`: receivers see exc_info
        raise
    _finish(result, TaskResultStatus.SUCCESSFUL)
    object.__setattr__(result, "_return_value", value)
    _send(task_finished, backend, result)
    return value


def _backend_for(task: DjangoTask[..., Any]) -> BaseTaskBackend:
    """The task's own backend if it is Crucible's (a task may be enqueued ``.using`` one)."""
    own = task.get_backend()
    if isinstance(own, CrucibleBackend):
        return own
    return next((b for b in task_backends.all() if isinstance(b, CrucibleBackend)), own)


def _attempt_result(task: DjangoTask[..., Any], alias: str, args: list[Any],
                    kwargs: dict[str, Any], claimed: dict[str, Any] | None
                    ) -> TaskResult[..., Any]:
    """The TaskResult of the attempt now running. A first attempt's is built from what the
    claim read (no earlier attempts to list): two reads fewer per task. A later attempt's
    lists the earlier ones' errors, so it reads the row and its attempts."""
    current = context.current()
    if claimed is not None and current.attempt == 1:
        as_enqueued = _as_enqueued(task, claimed["priority"], claimed["queue"], alias)
        return results.first_running(as_enqueued, current.task_id, current.worker_id,
                                     (args, kwargs), _moments(claimed), alias=alias)
    row, attempts = results.load(current.task_id)
    as_enqueued = _as_enqueued(task, row.priority, row.queue, alias)
    return results.build(as_enqueued, row, attempts, alias)


def _as_enqueued(task: DjangoTask[..., Any], priority: int, queue: str,
                 alias: str) -> DjangoTask[..., Any]:
    """``task`` as it was enqueued. Made once per executor for each way a task is enqueued
    (``using`` copies and validates the task: a fifth of what building the result cost)."""
    try:
        return _as_enqueued_cached(task, priority, queue, alias)
    except TypeError:  # a task that cannot be hashed: made each time
        return task.using(priority=priority, queue_name=queue, backend=alias)


@functools.lru_cache(maxsize=256)
def _as_enqueued_cached(task: DjangoTask[..., Any], priority: int, queue: str,
                        alias: str) -> DjangoTask[..., Any]:
    return task.using(priority=priority, queue_name=queue, backend=alias)


def _moments(claimed: dict[str, Any]) -> dict[str, datetime | None]:
    """The claim's moments (ISO text on the way) as datetimes again."""
    return {key: datetime.fromisoformat(claimed[key]) if claimed.get(key) else None
            for key in MOMENTS}


def _finish(result: TaskResult[..., Any], status: TaskResultStatus) -> None:
    object.__setattr__(result, "status", status)
    object.__setattr__(result, "finished_at", timezone.now())


def _error(exc: BaseException) -> TaskError:
    kind = type(exc)
    return TaskError(exception_class_path=f"{kind.__module__}.{kind.__qualname__}",
                     traceback="".join(traceback.format_exception(exc)))


def _send(signal: Signal, backend: BaseTaskBackend, result: TaskResult[..., Any]) -> None:
    signal.send_robust(type(backend), task_result=result)

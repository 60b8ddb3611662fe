"""Django ``@task`` functions for the tests of the Crucible tasks backend.

Importing this module connects receivers of Django's task_started / task_finished: they
record, in the Execution table, that (and in which process) each signal was received.
"""

from __future__ import annotations

import os
import time
from typing import Any

from django.dispatch import receiver
from django.tasks import TaskContext, TaskResult, task
from django.tasks.signals import task_finished, task_started

from workers.context import current

from .models import Execution

OTHER_QUEUE = "backend-other"


def _record(key: str) -> None:
    ctx = current()
    Execution.objects.create(key=key, task_id=ctx.task_id, attempt=ctx.attempt,
                             pid=os.getpid(), at=time.time())


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def record(key: str) -> str:
    _record(key)
    return key


@task(priority=50)
def urgent(key: str) -> str:
    _record(key)
    return key


@task(queue_name=OTHER_QUEUE)
def elsewhere(key: str) -> str:
    _record(key)
    return key


@task(takes_context=True)
def with_context(context: TaskContext[Any, Any], key: str) -> dict[str, Any]:
    _record(key)
    current().progress(0.5, "half way")
    return {
        "attempt": context.attempt,
        "id": context.task_result.id,
        "status": context.task_result.status,
        "worker_ids": context.task_result.worker_ids,
        "args": context.task_result.args,
    }


@task(takes_context=True, max_attempts=2, retry_backoff=0)  # type: ignore[call-overload, untyped-decorator]
def second_time_lucky(context: TaskContext[Any, Any]) -> int:
    if context.attempt == 1:
        raise RuntimeError("first attempt fails")
    return context.attempt


@task
async def async_multiply(a: int, b: int) -> int:
    return a * b


@task(takes_context=True)
async def async_with_context(context: TaskContext[Any, Any], key: str) -> str:
    current().progress(1.0, f"{key} done")
    return f"{key}:{context.attempt}:{context.task_result.id}"


@task
def progress(steps: int) -> int:
    ctx = current()
    for step in range(steps):
        ctx.progress((step + 1) / steps, f"step {step + 1} of {steps}")
    return steps


@task(max_attempts=2, retry_backoff=0)  # type: ignore[call-overload, untyped-decorator]
def always_fails(message: str) -> None:
    raise ValueError(message)


@task(max_attempts=1, timeout=0.5)  # type: ignore[call-overload, untyped-decorator]
def too_slow(seconds: float) -> None:
    time.sleep(seconds)


@task(max_attempts=1)  # type: ignore[call-overload, untyped-decorator]
def not_json() -> object:
    return object()


@task
def despite_a_failing_receiver() -> str:
    return "done"


def _ours(task_result: TaskResult[..., Any]) -> bool:
    return task_result.task.func.__module__ == __name__


def _record_signal(name: str, sender: type, task_result: TaskResult[..., Any]) -> None:
    if not _ours(task_result):
        return
    if task_result.task.func is despite_a_failing_receiver.func:
        raise RuntimeError(f"a {name} receiver that fails")
    key = f"{name} {task_result.task.name} {task_result.status} {sender.__name__}"
    Execution.objects.create(key=key, task_id=int(task_result.id),
                             attempt=task_result.attempts, pid=os.getpid(), at=time.time())


@receiver(task_started, dispatch_uid="testapp.backend_tasks.started")
def _on_started(sender: type, task_result: TaskResult[..., Any], **kwargs: Any) -> None:
    _record_signal("started", sender, task_result)


@receiver(task_finished, dispatch_uid="testapp.backend_tasks.finished")
def _on_finished(sender: type, task_result: TaskResult[..., Any], **kwargs: Any) -> None:
    _record_signal("finished", sender, task_result)

"""CrucibleBackend: Django's tasks framework (``@task``, ``enqueue``, ``get_result``) on Crucible.

Configured as ``TASKS = {"default": {"BACKEND": "workers.backends.CrucibleBackend", ...}}``.
This module is imported while Django loads apps (by ``@task`` decorators), so it reaches
the models only inside methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from django.core.checks import CheckMessage
from django.tasks import Task as DjangoTask
from django.tasks import TaskResult
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend
from django.tasks.signals import task_enqueued
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from . import limits
from .task import CrucibleTask

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import datetime

    from ..exceptions import InvalidTaskSpec
    from ..spec import TaskSpec


# How many tasks (as configured: priority, queue, run_after...) a backend remembers as
# admitted; it forgets them all past this, rather than grow with a script's run_after.
ADMITTED_MAX = 256


class CrucibleBackend(BaseTaskBackend):
    task_class = CrucibleTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self.declared_queues: object = params.get("QUEUES")
        self.defaults, self.option_problems = limits.from_options(self.options)
        self.admitted: dict[DjangoTask[..., Any], limits.Limits] = {}

    def validate_task(self, task: DjangoTask[..., Any]) -> None:
        super().validate_task(task)
        if len(task.queue_name) > limits.MAX_QUEUE_LENGTH:
            raise InvalidTask(f"queue_name must be at most {limits.MAX_QUEUE_LENGTH} characters.")
        for name in limits.RULES:
            found = limits.problem(name, getattr(task, name, None))
            if found:
                raise InvalidTask(f"{found}.")

    def enqueue[**P, R](self, task: DjangoTask[P, R], args: list[Any],
                        kwargs: dict[str, Any]) -> TaskResult[P, R]:
        from . import results

        spec = self._spec(task, args, kwargs)
        task_id, enqueued_at = _submit(spec)
        result = results.queued(task, task_id, enqueued_at, (spec.args, spec.kwargs), self.alias)
        task_enqueued.send(type(self), task_result=result)
        return result

    def enqueue_many[**P, R](self, task: DjangoTask[P, R],
                             calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]
                             ) -> list[TaskResult[P, R]]:
        """Enqueue ``task`` once per ``(args, kwargs)`` of ``calls``, in one transaction
        (``queue.enqueue_many``): all of them, or none with the refused call's index."""
        from . import results

        template = self._spec(task, [], {})
        normal = [(cast(list[Any], normalize_json(list(args))),
                   cast(dict[str, Any], normalize_json(dict(kwargs)))) for args, kwargs in calls]
        ids, enqueued_at = _submit_calls(template, normal)
        made = [results.queued(task, task_id, enqueued_at, call, self.alias)
                for task_id, call in zip(ids, normal, strict=True)]
        for result in made:
            task_enqueued.send(type(self), task_result=result)
        return made

    def _admit(self, task: DjangoTask[..., Any]) -> limits.Limits:
        """Refuse a task this backend cannot run: invalid, misconfigured, or not importable
        by its path as this very task. Its limits, over the backend's. A task admitted once
        is remembered: a script's thousands of calls of one task check it once."""
        try:
            return self.admitted[task]
        except KeyError:
            remember = True
        except TypeError:  # a task class of one's own with a field that cannot be hashed
            remember = False
        self.validate_task(task)
        if self.option_problems:
            raise InvalidTaskBackend(f"TASKS[{self.alias!r}]: {self.option_problems[0]}")
        _refuse_unreachable(task)
        chosen = limits.of(task).over(self.defaults)
        if remember:
            if len(self.admitted) >= ADMITTED_MAX:
                self.admitted.clear()
            self.admitted[task] = chosen
        return chosen

    def _spec(self, task: DjangoTask[..., Any], args: list[Any],
              kwargs: dict[str, Any]) -> TaskSpec:
        """What the queue is given of a call: admitted first (``_admit``)."""
        from ..spec import TaskSpec

        chosen = self._admit(task)
        return TaskSpec(
            func_path=task.module_path,
            args=cast(list[Any], normalize_json(list(args))),
            kwargs=cast(dict[str, Any], normalize_json(dict(kwargs))),
            queue=task.queue_name,
            priority=task.priority,
            run_after=task.run_after,
            max_attempts=chosen.max_attempts,
            timeout=chosen.timeout,
            memory_mb=chosen.memory_mb,
            retry_backoff=chosen.retry_backoff,
        )

    def get_result(self, result_id: str) -> TaskResult[..., Any]:
        from . import results

        row, attempts = results.load(results.parse_id(result_id))
        return results.build(results.task_for(row, self.alias), row, attempts, self.alias)

    async def aget_result(self, result_id: str) -> TaskResult[..., Any]:
        from . import results

        row, attempts = await results.aload(results.parse_id(result_id))
        return results.build(results.task_for(row, self.alias), row, attempts, self.alias)

    def check(self, **kwargs: Any) -> list[CheckMessage]:
        from .checks import check_backend

        return [*super().check(**kwargs), *check_backend(self)]


def _refuse_unreachable(task: DjangoTask[..., Any]) -> None:
    """The worker imports the task by its path: it must find this very task there."""
    try:
        found = import_string(task.module_path)
    except ImportError as exc:
        raise InvalidTask(f"Cannot import {task.module_path!r}: {exc}") from exc
    if not isinstance(found, DjangoTask) or found.func is not task.func:
        raise InvalidTask(
            f"{task.module_path!r} is not this task: decorate the function where it is defined."
        )


def _submit(spec: TaskSpec) -> tuple[int, datetime]:
    """Enqueue through Crucible's queue: the task's id and the moment it was enqueued.
    Translate its refusals into Django's exceptions."""
    from .. import queue
    from ..exceptions import InvalidTaskSpec

    try:
        return queue.enqueue_one(spec)
    except InvalidTaskSpec as exc:
        raise _as_django(exc) from exc


def _submit_calls(template: TaskSpec, calls: list[tuple[list[Any], dict[str, Any]]]
                  ) -> tuple[list[int], datetime]:
    from .. import queue
    from ..exceptions import InvalidTaskSpec

    try:
        return queue.enqueue_calls(template, calls)
    except InvalidTaskSpec as exc:
        raise _as_django(exc) from exc


def _as_django(exc: InvalidTaskSpec) -> Exception:
    """Crucible's refusal as Django's: TypeError for a call that does not fit the function,
    ValueError for arguments that are not JSON, InvalidTask for the rest."""
    from ..exceptions import CallMismatch

    if isinstance(exc, CallMismatch):
        return TypeError(str(exc))
    if exc.field.endswith(("args", "kwargs")):
        return ValueError(str(exc))
    return InvalidTask(str(exc))

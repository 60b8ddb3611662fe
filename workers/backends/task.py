"""Django's Task, extended with Crucible's per-task limits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from django.tasks import Task, TaskResult
from django.tasks.exceptions import InvalidTask

if TYPE_CHECKING:  # a `type` statement alias could not be a base class
    _Task: TypeAlias = Task[..., Any]  # noqa: UP040
else:  # Django's Task is not subscriptable at run time
    _Task = Task


@dataclass(frozen=True, slots=True, kw_only=True)
class CrucibleTask(_Task):
    """A task with Crucible's limits: ``@task(max_attempts=3, timeout=600, memory_mb=2048)``.

    None leaves a limit to the backend's OPTIONS, then to the WORKER_* settings.
    """

    max_attempts: int | None = None
    timeout: float | None = None
    memory_mb: int | None = None
    retry_backoff: float | None = None

    def enqueue_many(self, calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]
                     ) -> list[TaskResult[..., Any]]:
        """Enqueue one task per ``(args, kwargs)`` in ``calls`` (a sweep's points), in one
        transaction: all of them, or none, with the index of the call that was refused."""
        return enqueue_many(self, calls)


def enqueue_many[**P, R](task: Task[P, R],
                         calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]
                         ) -> list[TaskResult[P, R]]:
    """``task.enqueue_many(calls)`` for code whose type checker sees ``@task`` as Django's
    ``Task``: ``enqueue_many(add, [((1, 2), {}), ((3, 4), {})])``."""
    from .backend import CrucibleBackend

    backend = task.get_backend()
    if not isinstance(backend, CrucibleBackend):
        raise InvalidTask(f"enqueue_many needs Crucible's backend, not {backend.alias!r}.")
    return backend.enqueue_many(task, calls)


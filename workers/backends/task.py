"""Django's Task, extended with Crucible's per-task limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from django.tasks import Task

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


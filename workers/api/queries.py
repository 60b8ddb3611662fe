"""Reading tasks for the API: one page of a filtered list, or one task with its history."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..models import Task, TaskAttempt, TaskDependency
from ..queue import get as get_task
from .forms import TaskQuery

# Large JSON columns the list does not show.
HEAVY_FIELDS = ("args", "kwargs", "result")


@dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: list[Task]
    count: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.count / self.page_size))

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def task_page(query: TaskQuery) -> TaskPage:
    """Newest first; a page past the end is empty rather than an error."""
    rows = Task.objects.filter(**query.filters).order_by("-id").defer(*HEAVY_FIELDS)
    count = rows.count()
    start = (query.page - 1) * query.page_size
    tasks = list(rows[start : start + query.page_size]) if start < count else []
    return TaskPage(tasks=tasks, count=count, page=query.page, page_size=query.page_size)


@dataclass(frozen=True, slots=True)
class TaskHistory:
    task: Task
    attempts: list[TaskAttempt]
    depends_on: list[int]


def task_history(task_id: int) -> TaskHistory:
    task = get_task(task_id)
    return TaskHistory(
        task=task,
        attempts=list(TaskAttempt.objects.filter(task_id=task_id).order_by("number")),
        depends_on=list(
            TaskDependency.objects.filter(task_id=task_id)
            .order_by("depends_on_id")
            .values_list("depends_on_id", flat=True)
        ),
    )

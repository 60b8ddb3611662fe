"""Reading tasks for the API: one page of a filtered list, or one task with its history."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from ..models import Task, TaskAttempt, TaskDependency
from ..queue import get as get_task
from .forms import TaskQuery

# Large JSON columns the list does not show.
HEAVY_FIELDS = ("args", "kwargs", "result")


Cursor = dict[str, int]


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page, newest first, and the cursors of its neighbours (None: nothing there)."""

    tasks: list[Task]
    page_size: int
    next: Cursor | None
    previous: Cursor | None


def task_page(query: TaskQuery) -> TaskPage:
    """One query whatever the table's size: an index range on the primary key, never a
    COUNT or an OFFSET. A page past the end is empty rather than an error."""
    rows = Task.objects.filter(**query.filters).defer(*HEAVY_FIELDS)
    if query.after is None and query.before is not None:
        return _newer(rows, query.before, query.page_size)
    return _older(rows, query)


def _older(rows: QuerySet[Task], query: TaskQuery) -> TaskPage:
    """The newest tasks below ``after`` (and above ``before``, a window's floor, kept in
    the next page's cursor)."""
    if query.after is not None:
        rows = rows.filter(id__lt=query.after)
    floor: Cursor = {}
    if query.before is not None:
        rows = rows.filter(id__gt=query.before)
        floor = {"before": query.before}
    found = list(rows.order_by("-id")[: query.page_size + 1])
    tasks = found[: query.page_size]
    more = len(found) > query.page_size
    return TaskPage(
        tasks=tasks,
        page_size=query.page_size,
        next={"after": tasks[-1].pk, **floor} if more else None,
        previous={"before": tasks[0].pk} if tasks and query.after is not None else None,
    )


def _newer(rows: QuerySet[Task], before: int, size: int) -> TaskPage:
    """The ``size`` tasks just newer than ``before``, still listed newest first."""
    found = list(rows.filter(id__gt=before).order_by("id")[: size + 1])
    tasks = found[:size][::-1]
    return TaskPage(
        tasks=tasks,
        page_size=size,
        next={"after": tasks[-1].pk} if tasks else None,
        previous={"before": tasks[0].pk} if len(found) > size else None,
    )


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

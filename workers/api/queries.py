"""Reading tasks for the API: one page of a filtered list, or one task with its history."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from ..models import Task, TaskAttempt, TaskDependency
from ..queue import get as get_task
from ..web import listing
from .forms import TaskQuery

# Large JSON columns the list does not show.
HEAVY_FIELDS = ("args", "kwargs", "result")
FEW = listing.COUNT_CAP  # matches read as ids first: the admin's bound of a cheap count


Cursor = dict[str, int]


@dataclass(frozen=True, slots=True)
class TaskPage:
    """One page, newest first, and the cursors of its neighbours (None: nothing there)."""

    tasks: list[Task]
    page_size: int
    next: Cursor | None
    previous: Cursor | None


def task_page(query: TaskQuery) -> TaskPage:
    """An index range on the primary key, never a COUNT or an OFFSET, so a page costs the
    same at the ten-millionth row. A page past the end is empty rather than an error."""
    rows = _matching(query).defer(*HEAVY_FIELDS)
    if query.after is None and query.before is not None:
        return _newer(rows, query.before, query.page_size)
    return _older(rows, query)


def _matching(query: TaskQuery) -> QuerySet[Task]:
    """The filtered tasks, each filter through its index (as the admin's list reads them)."""
    rows: QuerySet[Task] = Task.objects.all()
    if query.states:
        rows = rows.filter(state__in=query.states)
    if query.queue is not None:
        rows = listing.with_queue(rows, query.queue)
    if query.priority is not None:
        rows = listing.with_priority(rows, query.priority)
    if query.worker is not None:
        rows = rows.filter(worker_id=query.worker)
    if query.func_path is not None:
        rows = rows.filter(func_path=query.func_path)
    if query.func_path_prefix is not None:
        rows = _with_prefix(rows, query.func_path_prefix)
    return _by_ids_if_few(rows) if rows.query.has_filters() else rows


def _by_ids_if_few(rows: QuerySet[Task]) -> QuerySet[Task]:
    """A filter that at most ``FEW`` tasks match, as those tasks' ids.

    Asked for the newest page of a rare value, a planner walks the primary key from the
    newest task and tests every row on the way (the whole table for a queue of 100 tasks).
    Read through the filter's index first, the ids make the page a primary-key lookup. A
    filter that matches more keeps its rows: walking the key then meets a match soon.
    """
    ids = list(rows.order_by().values_list("pk", flat=True)[: FEW + 1])
    return rows if len(ids) > FEW else Task.objects.filter(pk__in=ids)


def _with_prefix(rows: QuerySet[Task], prefix: str) -> QuerySet[Task]:
    """Paths starting with ``prefix``, as the few distinct paths that do (found through the
    func_path index): ``LIKE 'prefix%'`` uses no index on SQLite."""
    paths = listing.distinct_values(Task, "func_path", limit=listing.MAX_PATHS + 1)
    if len(paths) > listing.MAX_PATHS:  # too many to list: let the database test each row
        return rows.filter(func_path__startswith=prefix)
    return rows.filter(func_path__in=[path for path in paths if path.startswith(prefix)])


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

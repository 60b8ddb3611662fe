"""Reading a task table of millions of rows: bounded counts, and distinct values by index.

The admin's defaults count every row, list a filter's values with ``SELECT DISTINCT`` and
search with ``LIKE '%term%'``: each a full scan. Here a count stops at a cap, distinct
values are found by jumping through an index (one probe per value), and search matches
the few distinct function paths, then finds tasks by index.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.core.paginator import Page, Paginator
from django.db import connection
from django.db.models import Field, Model, Q, QuerySet

from ..models import Task, TaskQuerySet, Worker
from ..queue.literals import Literal
from ..states import TaskState
from . import owners

COUNT_CAP = 10_000
MAX_DISTINCT = 200  # values a filter lists
FEW_OWNED = 100  # owned tasks a word's condition lists by id; more are read as a subquery
MAX_PATHS = 2_000  # function paths a search looks through
MAX_WORKERS_LISTED = 20
MAX_TASK_ID = 2**63 - 1


if TYPE_CHECKING:
    PaginatorBase = Paginator[Any]
else:  # Paginator is not subscriptable at run time
    PaginatorBase = Paginator


class PinnedTasks(TaskQuerySet):
    """Tasks known by their ids (at most ``COUNT_CAP``), in the list's order."""

    pinned_ids: list[int] | None = None


class CountedTasks(TaskQuerySet):
    """Tasks a bounded count found to be more than ``more_than``: not counted again."""

    more_than: int = 0


class BoundedPaginator(PaginatorBase):
    """Counts at most ``COUNT_CAP + 1`` rows; past the cap, pages say "more than".

    A list pinned to its ids is counted and paged from those ids, never sent whole.
    """

    cap = COUNT_CAP

    @cached_property
    def count(self) -> int:
        ids = getattr(self.object_list, "pinned_ids", None)
        if ids is not None:
            return len(ids)
        if getattr(self.object_list, "more_than", 0) >= self.cap:
            return self.cap + 1
        rows = self.object_list
        assert isinstance(rows, QuerySet)  # the admin pages querysets
        return rows.order_by()[: self.cap + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.cap

    def page(self, number: int | str) -> Any:
        ids = getattr(self.object_list, "pinned_ids", None)
        if ids is None:
            return super().page(number)
        page = self.validate_number(number)
        first = (page - 1) * self.per_page
        rows = self.object_list
        assert isinstance(rows, QuerySet)
        shown = Task.objects.filter(pk__in=ids[first : first + self.per_page])
        return Page(shown.order_by(*rows.query.order_by), page, self)


def distinct_values(
    model: type[Model], field: str, where: str = "", params: tuple[Any, ...] = (),
    limit: int = MAX_DISTINCT,
) -> list[Any]:
    """The first ``limit`` distinct values of an indexed column, in order ("skip scan").

    ``where`` is an SQL condition on the same table that the index can serve (a prefix
    column's equality, or the index's own condition).
    """
    table = connection.ops.quote_name(model._meta.db_table)
    column = quoted_column(model, field)
    also = f"{where} AND " if where else ""
    first = f"SELECT {column} FROM {table} WHERE {also}{column} IS NOT NULL"
    after = f"SELECT {column} FROM {table} WHERE {also}{column} > found.value"
    sql = (
        f"WITH RECURSIVE found(value, n) AS ("
        f" SELECT ({first} ORDER BY {column} LIMIT 1), 1"
        f" UNION ALL SELECT ({after} ORDER BY {column} LIMIT 1), n + 1"
        f" FROM found WHERE found.value IS NOT NULL AND n < %s"
        f") SELECT value FROM found WHERE value IS NOT NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *params, limit])
        return [row[0] for row in cursor.fetchall()]


def quoted_column(model: type[Model], name: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, Field) and field.column is not None
    return connection.ops.quote_name(field.column)


def task_queues() -> list[str]:
    """Every queue that has tasks, through ``task_state_idx`` (state, queue)."""
    state = quoted_column(Task, "state")
    found: set[str] = set()
    for value in TaskState.values:
        found.update(distinct_values(Task, "queue", f"{state} = %s", (value,)))
    return sorted(found)


def task_priorities() -> list[int]:
    """Every priority that tasks have, highest first (0 is the default, always listed)."""
    priority = quoted_column(Task, "priority")
    others = distinct_values(Task, "priority", f"NOT ({priority} = 0)")  # task_priority_idx
    return sorted({0, *others}, reverse=True)


def with_queue(tasks: QuerySet[Task], queue: str) -> QuerySet[Task]:
    """Tasks of one queue, through ``task_state_idx`` (state, queue): one range per state."""
    return tasks.filter(state__in=TaskState.values, queue=queue)


def with_priority(tasks: QuerySet[Task], priority: int) -> QuerySet[Task]:
    """Tasks of one priority; a non-default one through the partial ``task_priority_idx``."""
    tasks = tasks.filter(priority=priority)
    # SQLite uses a partial index only when the query's text repeats the index's condition.
    return tasks if priority == 0 else tasks.exclude(priority=Literal(0))


def pinned(tasks: QuerySet[Task]) -> QuerySet[Task]:
    """A filtered list that matches at most ``COUNT_CAP`` tasks, as those tasks' ids.

    Asked for the newest page of a rare value, a planner walks the primary key backwards
    and tests every row on the way (a whole table for a queue of 100 tasks). Found first
    through the filter's own index, the few ids are counted and paged in Python, and a
    page is read by primary key. A filter that matches more keeps its rows: walking the
    key then meets a match soon. Only a list in id order is pinned.
    """
    descending = _id_order(tasks.query.order_by)
    if descending is None:
        return tasks
    unordered = tasks.order_by()
    if unordered[: COUNT_CAP + 1].count() > COUNT_CAP:
        counted = CountedTasks(Task, query=tasks.query.chain())  # the paginator's count, made
        counted.more_than = COUNT_CAP
        return counted
    ids = sorted(unordered.values_list("pk", flat=True), reverse=descending)
    rows = PinnedTasks(Task).filter(pk__in=ids).order_by(*tasks.query.order_by)
    rows.pinned_ids = ids
    return rows


def _id_order(ordering: Sequence[Any]) -> bool | None:
    """True for newest first, False for oldest first, None for any other order."""
    directions = {str(term).startswith("-") for term in ordering}
    names = {str(term).lstrip("-") for term in ordering}
    if not ordering or len(directions) != 1 or not names <= {"id", "pk"}:
        return None
    return directions.pop()


def recent_workers() -> list[Worker]:
    return list(Worker.objects.order_by("-id").only("id", "node")[:MAX_WORKERS_LISTED])


def search(tasks: QuerySet[Task], text: str) -> QuerySet[Task]:
    """Every word must match: a task id, part of the task's function path, or its owner
    (a simulation's name or parameters, ``key=value`` for one parameter's value)."""
    paths: list[str] | None = None
    for word in text.split():
        if paths is None:
            paths = distinct_values(Task, "func_path", limit=MAX_PATHS)
        tasks = tasks.filter(_word(word, paths))
    return tasks


def _word(word: str, paths: list[str]) -> Q:
    needle = word.casefold()
    matches = Q(func_path__in=[path for path in paths if needle in path.casefold()])
    if word.isdigit() and int(word) <= MAX_TASK_ID:
        matches |= Q(pk=int(word))
    for owned in owners.find(word, COUNT_CAP):
        few = list(owned[:FEW_OWNED + 1])
        if few:  # a subquery in the OR would cost a word that matches no owner a scan
            matches |= Q(pk__in=few if len(few) <= FEW_OWNED else owned)
    return matches

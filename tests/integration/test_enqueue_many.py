"""``queue.enqueue_many``: thousands of tasks in a few statements, each checked as ``enqueue``
checks it, all or nothing, and one wake-up per queue."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from workers import queue
from workers.exceptions import InvalidTaskSpec
from workers.models import Task
from workers.pool import learning
from workers.queue import doorbell
from workers.spec import TaskSpec

from .helpers import TASKS, columns_of, statements

pytestmark = pytest.mark.django_db(transaction=True)

ADD = f"{TASKS}.add"
SAME = ("func_path", "args", "kwargs", "queue", "priority", "max_attempts", "timeout",
        "memory_mb", "memory_estimate_mb", "memory_source", "memory_limit_mb", "cpus",
        "retry_backoff", "state", "pending_dependencies")


def test_thousands_of_tasks_are_a_few_inserts_and_the_same_rows_as_enqueue(crucible):
    due = timezone.now() + timedelta(hours=2)
    specs = [TaskSpec(func_path=ADD, args=[n, 1], priority=n % 3, kwargs={},
                      run_after=due if n % 2 else None, timeout=60 + n % 2,  # whole seconds
                      memory_limit_mb=4096 if n % 5 else None, retry_backoff=1.5,
                      queue="sweep" if n % 7 else "") for n in range(2500)]

    with statements() as sent:
        made = queue.enqueue_many(specs)

    inserts = [sql for sql in sent if 'INSERT INTO "workers_task"' in sql]
    # PostgreSQL: one statement, a column an array. SQLite: 1,024 rows a statement, then the
    # rest by powers of two (2,500 = 1,024 + 1,024 + 256 + 128 + 64 + 4).
    assert len(inserts) == (1 if connection.vendor == "postgresql" else 6)
    assert len(made) == 2500 and len({task.pk for task in made}) == 2500
    stored = {task.pk: task for task in Task.objects.all()}
    assert [task.pk for task in made] == sorted(stored), "in the order given, FIFO"
    for index in (0, 1, 7, 1024, 2499):
        row = stored[made[index].pk]
        assert columns_of(made[index]) == columns_of(row), "the returned task is the stored row"
        assert made[index].created_at == row.created_at
        alone = queue.enqueue(specs[index])
        assert columns_of(row) == columns_of(Task.objects.get(pk=alone.pk)), index


def test_many_calls_of_one_function_are_checked_each_and_estimated_by_their_scale(
        crucible, monkeypatch):
    monkeypatch.setitem(learning._scales, ADD, lambda kwargs: float(kwargs["b"]))
    template = TaskSpec(func_path=ADD, queue="sweep", priority=4, memory_limit_mb=900)
    calls: list[tuple[list[Any], dict[str, Any]]] = [([1], {"b": 2}), ([3], {"b": 5}),
                                                      ([4], {"b": 2})]

    with statements() as sent:
        ids, enqueued_at = queue.enqueue_calls(template, calls)

    inserts = [sql for sql in sent if 'INSERT INTO "workers_task"' in sql]
    assert len(inserts) == (1 if connection.vendor == "postgresql" else 2), "3 rows: 2 + 1"

    rows = list(Task.objects.order_by("id"))
    assert [row.pk for row in rows] == ids
    assert [(row.args, row.kwargs, row.memory_scale) for row in rows] == [
        ([1], {"b": 2}, 2.0), ([3], {"b": 5}, 5.0), ([4], {"b": 2}, 2.0)]
    assert {(row.queue, row.priority, row.memory_limit_mb, row.created_at) for row in rows} == {
        ("sweep", 4, 900, enqueued_at)}
    with pytest.raises(InvalidTaskSpec, match=r"^tasks\[1\]\.args: do not match add\(a, b\)"):
        queue.enqueue_calls(template, [([1], {"b": 2}), ([1], {"c": 2})])
    with pytest.raises(InvalidTaskSpec, match=r"^tasks\[2\]\.kwargs: do not match add"):
        # a shape that fitted is bound once; one more keyword is another shape
        queue.enqueue_calls(template, [([1], {"b": 2}), ([7], {"b": 3}), ([1], {"b": 2, "c": 1})])
    with pytest.raises(InvalidTaskSpec, match=r"^tasks\[0\]\.args: must be JSON"):
        queue.enqueue_calls(template, [([float("nan")], {"b": 2})])
    assert Task.objects.count() == 3, "a refused call writes nothing"


def test_one_refused_spec_refuses_them_all_naming_its_index(crucible):
    specs = [TaskSpec(func_path=ADD, args=[n, 1]) for n in range(10)]
    specs[7] = TaskSpec(func_path=ADD, args=[1])  # add(a, b) needs two

    with pytest.raises(InvalidTaskSpec, match=r"^tasks\[7\]\.args: "):
        queue.enqueue_many(specs)

    assert not Task.objects.exists()


def test_dependencies_belong_in_a_run(crucible):
    first = queue.enqueue(TaskSpec(func_path=ADD, args=[1, 2]))

    with pytest.raises(InvalidTaskSpec, match=r"^tasks\[0\]\.depends_on: .*submit a run"):
        queue.enqueue_many([TaskSpec(func_path=ADD, args=[1, 2], depends_on=[first.pk])])

    assert Task.objects.count() == 1


def test_each_queue_is_rung_once_after_the_commit(crucible, monkeypatch):
    rung: list[str] = []
    monkeypatch.setattr(doorbell, "ring_all", rung.append)
    specs: list[Any] = [TaskSpec(func_path=ADD, args=[n, 1], queue=("a" if n % 2 else "b"))
                        for n in range(50)]

    queue.enqueue_many(specs)

    assert rung == ["q:a", "q:b"]

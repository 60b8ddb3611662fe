"""``queue.enqueue_many``: thousands of tasks in a few statements, each checked as ``enqueue``
checks it, all or nothing, and one wake-up per queue."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from workers import doorbell, queue
from workers.exceptions import InvalidTaskSpec
from workers.models import Task
from workers.spec import TaskSpec
from workers.states import TaskState

from .helpers import TASKS

pytestmark = pytest.mark.django_db(transaction=True)

ADD = f"{TASKS}.add"
SAME = ("func_path", "args", "kwargs", "queue", "priority", "max_attempts", "timeout",
        "memory_mb", "memory_estimate_mb", "memory_source", "memory_limit_mb", "cpus",
        "retry_backoff", "state", "pending_dependencies")


def test_thousands_of_tasks_are_a_few_inserts_and_the_same_rows_as_enqueue(crucible):
    specs = [TaskSpec(func_path=ADD, args=[n, 1], priority=n % 3) for n in range(2500)]

    with CaptureQueriesContext(connection) as queries:
        made = queue.enqueue_many(specs)

    inserts = [q for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 3, "1,000 rows a statement"
    assert len(made) == 2500 and all(task.pk for task in made)
    assert Task.objects.filter(state=TaskState.QUEUED).count() == 2500
    alone = queue.enqueue(specs[7])
    many = Task.objects.get(pk=made[7].pk)
    assert {f: getattr(many, f) for f in SAME} == {f: getattr(alone, f) for f in SAME}


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

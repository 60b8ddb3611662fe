"""``queue.enqueue`` of a task without predecessors: one INSERT built once (``inserting``),
the same row Django's ORM would write, and the wake-up of its queue at commit only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from workers import queue
from workers.exceptions import TooLarge
from workers.models import MemoryProfile, Node, Task
from workers.queue import doorbell
from workers.spec import TaskSpec

from .helpers import TASKS, columns_of, statements

pytestmark = pytest.mark.django_db(transaction=True)

ADD = f"{TASKS}.add"


def test_an_enqueue_is_one_insert_and_writes_the_row_the_orm_would(crucible):
    due = timezone.now() + timedelta(hours=1)
    spec = TaskSpec(func_path=ADD, args=[1, 2], kwargs={}, queue="big", priority=3,
                    max_attempts=5, timeout=60.0, run_after=due, retry_backoff=2.5)
    queue.enqueue(spec)  # the first call of a process builds the statement

    with statements() as sent:
        made = queue.enqueue(spec)

    assert len(sent) == 1 and "INSERT INTO" in sent[0], sent
    stored = Task.objects.get(pk=made.pk)
    assert columns_of(made) == columns_of(stored), "the returned task is the stored row"
    assert made.created_at == stored.created_at
    by_orm = Task.objects.create(**{name: value for name, value in columns_of(stored).items()
                                    if name in queue.call_fields(spec) or name in (
                                        "state", "pending_dependencies", "run_after",
                                        "memory_estimate_mb", "memory_source",
                                        "memory_estimate_runs", "memory_scale",
                                        "memory_limit_mb", "cpus")})
    assert columns_of(Task.objects.get(pk=by_orm.pk)) == columns_of(stored)
    assert (stored.queue, stored.priority, stored.run_after, stored.args) == (
        "big", 3, due, [1, 2])


def test_an_execute_wrapper_sees_the_insert_and_a_broken_transaction_refuses_it(crucible):
    """The insert skips Django's cursor wrapper only when nothing would see the difference:
    an ``execute_wrapper`` (instrumentation, a test's) is still called with it, and after
    an error in an atomic block it is refused as Django refuses any query."""
    spec = TaskSpec(func_path=ADD, args=[1, 2], kwargs={})
    seen: list[str] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        made = queue.enqueue(spec)
    assert any(sql.startswith("INSERT INTO") for sql in seen), seen

    with transaction.atomic():
        with pytest.raises(DatabaseError), transaction.atomic(savepoint=False):
            Task.objects.create(id=made.pk, func_path=ADD)  # the same id: an error
        with pytest.raises(TransactionManagementError):
            queue.enqueue(spec)
        transaction.set_rollback(True)
    assert list(Task.objects.values_list("pk", flat=True)) == [made.pk]


def _learned(peak_mb: float, runs: int = 5) -> None:
    MemoryProfile.objects.create(func_path=ADD, runs=runs, samples=[[None, peak_mb]] * runs)


def test_a_learned_estimate_is_read_by_the_insert_itself(crucible):
    Node.objects.create(name="lab-node-1", memory_mb=4000, ceiling_mb=8000, cpus=4)
    _learned(100.0)

    with statements() as sent:
        made = queue.enqueue(TaskSpec(func_path=ADD, args=[1, 2]))

    assert len(sent) == 1, sent
    stored = Task.objects.get(pk=made.pk)
    expected = (110, "learned", 5)  # the peak plus the 10 % margin, from 5 runs
    assert (made.memory_estimate_mb, made.memory_source, made.memory_estimate_runs) == expected
    assert (stored.memory_estimate_mb, stored.memory_source,
            stored.memory_estimate_runs) == expected


def test_a_learned_estimate_larger_than_every_node_is_refused_unless_forced(crucible):
    Node.objects.create(name="lab-node-1", memory_mb=4000, ceiling_mb=8000, cpus=4)
    _learned(10_000.0)

    with pytest.raises(TooLarge, match=r"needs 10\.7 GB \(learned from 5 runs\), more than any "
                                        r"node's budget: the largest is 7\.8 GB \(lab-node-1\)"):
        queue.enqueue(TaskSpec(func_path=ADD, args=[1, 2]))
    assert not Task.objects.exists(), "a refused task was written"

    forced = queue.enqueue(TaskSpec(func_path=ADD, args=[1, 2], force=True))
    assert (forced.memory_estimate_mb, forced.memory_source) == (11_000, "learned")


def test_with_no_node_known_yet_the_insert_leaves_the_check_to_the_machines_figure(crucible):
    _learned(100.0)

    made = queue.enqueue(TaskSpec(func_path=ADD, args=[1, 2]))

    assert (made.memory_estimate_mb, made.memory_source) == (110, "learned")


@pytest.fixture
def listener() -> Any:
    if connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; SQLite rings after commit, tested by "
                    "every pickup test")
    db = connection.settings_dict
    conninfo = psycopg.conninfo.make_conninfo(
        host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"] or "postgres",
        dbname=db["NAME"])
    with psycopg.connect(conninfo, autocommit=True) as listening:
        listening.execute(f'LISTEN "{doorbell.channel("q:default")}"')
        yield listening


def _heard(listening: psycopg.Connection[Any]) -> list[str]:
    return [n.payload for n in listening.notifies(timeout=0.5, stop_after=1)]


def test_the_wake_up_rides_in_the_insert_and_is_heard_at_commit_only(crucible, listener):
    with transaction.atomic():
        queue.enqueue(TaskSpec(func_path=ADD, args=[1, 2]))
        assert _heard(listener) == [], "heard before the task's row was committed"
    assert _heard(listener) == ["q:default"]

    with pytest.raises(RuntimeError), transaction.atomic():
        queue.enqueue(TaskSpec(func_path=ADD, args=[3, 4]))
        raise RuntimeError("the caller's transaction rolls back")
    assert _heard(listener) == [], "a rolled-back task woke the workers"
    assert Task.objects.count() == 1

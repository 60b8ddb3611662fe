"""Retention: finished tasks, ended workers and old samples go in batches, through indexes."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from simulations.models import Simulation, Sweep
from workers.models import Heartbeat, Task, TaskAttempt, TaskDependency, Worker
from workers.queue import retention
from workers.states import Outcome, TaskState, WorkerState

pytestmark = pytest.mark.django_db

DAY = 86400.0
FUNC = "tests.testapp.tasks.noop"


@pytest.fixture
def keep(settings: Any, crucible: Any) -> Any:
    """A day of results, an hour of ended workers and samples."""
    settings.CRUCIBLE = dataclasses.replace(
        crucible, result_retention=DAY, cleanup_age=3600.0, heartbeat_retention=3600.0
    )
    return settings.CRUCIBLE


def days_ago(days: float) -> Any:
    return timezone.now() - timedelta(days=days)


def finished(state: str = TaskState.SUCCEEDED, age_days: float = 2.0, **fields: Any) -> Task:
    return Task.objects.create(
        func_path=FUNC, timeout=60, state=state, finished_at=days_ago(age_days), **fields
    )


def attempt(task: Task, number: int = 1, worker: Worker | None = None) -> TaskAttempt:
    at = task.finished_at or timezone.now()
    label = f"worker {worker.pk}" if worker else ""
    return TaskAttempt.objects.create(
        task=task, number=number, worker=worker, worker_label=label, started_at=at,
        finished_at=at, outcome=Outcome.SUCCEEDED,
    )


def ended_worker(age_days: float, state: str = WorkerState.DEAD) -> Worker:
    return Worker.objects.create(node="n", state=state, stopped_at=days_ago(age_days))


def ids(model: Any) -> set[int]:
    return set(model.objects.values_list("pk", flat=True))


def test_old_finished_tasks_go_with_their_attempts(keep):
    old = [finished(state) for state in (TaskState.SUCCEEDED, TaskState.FAILED,
                                         TaskState.CANCELLED)]
    for task in old:
        attempt(task)
    recent = finished(age_days=0.5)
    attempt(recent)
    # Not finished, whatever an old finished_at says: a retried or running task stays.
    live = [finished(state) for state in (TaskState.QUEUED, TaskState.RUNNING,
                                          TaskState.WAITING)]

    report = retention.prune()

    assert ids(Task) == {recent.pk, *(task.pk for task in live)}
    assert set(TaskAttempt.objects.values_list("task_id", flat=True)) == {recent.pk}
    assert (report.tasks, report.attempts, report.more) == (3, 3, False)


def test_what_points_at_a_pruned_task_is_cleared_not_broken(keep):
    task = finished()
    worker = Worker.objects.create(node="n", state=WorkerState.RUNNING, current_task=task)
    sample = Heartbeat.objects.create(worker=worker, at=timezone.now(), rss_bytes=1,
                                      cpu_percent=0, task=task)

    retention.prune()

    assert not Task.objects.filter(pk=task.pk).exists()
    worker.refresh_from_db()
    sample.refresh_from_db()
    assert (worker.current_task_id, sample.task_id) == (None, None)


def test_a_task_an_unfinished_task_waits_on_is_kept(keep):
    failed = finished(TaskState.FAILED, has_dependents=True)
    waiting = Task.objects.create(func_path=FUNC, timeout=60, state=TaskState.WAITING,
                                  pending_dependencies=1)
    TaskDependency.objects.create(task=waiting, depends_on=failed)
    done_before = finished(has_dependents=True)
    done_after = finished()
    TaskDependency.objects.create(task=done_after, depends_on=done_before, satisfied=True)

    report = retention.prune()

    assert ids(Task) == {failed.pk, waiting.pk}
    assert list(TaskDependency.objects.values_list("task_id", "depends_on_id")) == [
        (waiting.pk, failed.pk)
    ]
    assert (report.tasks, report.dependencies) == (2, 1)


def test_the_tasks_of_simulations_and_sweeps_are_kept_until_those_go(keep, admin_client):
    simulated, summary = finished(), finished()
    attempt(simulated)
    simulation = Simulation.objects.create(kind="slab", memory_mb=10, task=simulated)
    sweep = Sweep.objects.create(kind="slab", summary_task=summary)

    retention.prune()

    assert ids(Task) == {simulated.pk, summary.pk}
    page = reverse("admin:simulations_simulation_change", args=[simulation.pk])
    assert admin_client.get(page).status_code == 200

    simulation.delete()
    sweep.delete()
    retention.prune()

    assert ids(Task) == set()


def test_zero_keeps_finished_tasks_for_ever(keep, settings):
    settings.CRUCIBLE = dataclasses.replace(keep, result_retention=0.0)
    ancient = finished(age_days=3650)
    attempt(ancient)

    report = retention.prune()

    assert ids(Task) == {ancient.pk}
    assert ids(TaskAttempt) != set()
    assert report.tasks == 0


def test_deadlines_are_judged_by_the_database_clock(keep):
    recent = finished(age_days=0.5)
    worker = ended_worker(age_days=0.01)
    # A node whose clock runs a month ahead must not make recent rows look old.
    with mock.patch("django.utils.timezone.now", return_value=days_ago(-30)):
        retention.prune()

    assert ids(Task) == {recent.pk}
    assert ids(Worker) == {worker.pk}


def test_batches_are_bounded_and_the_next_call_goes_on(keep):
    tasks = [finished(age_days=10 - n) for n in range(5)]

    first = retention.prune(batch_size=2, max_batches=2)

    assert (first.tasks, first.more) == (4, True)
    assert ids(Task) == {tasks[-1].pk}  # the oldest went first
    second = retention.prune(batch_size=2, max_batches=2)
    assert (second.tasks, second.more) == (1, False)


def test_old_ended_workers_go_their_tasks_and_attempts_keep_a_label(keep, admin_client):
    gone = ended_worker(age_days=1, state=WorkerState.FAILED)
    task = finished(age_days=0.1, worker=gone)
    attempt(task, worker=gone)
    Heartbeat.objects.create(worker=gone, at=timezone.now(), rss_bytes=1, cpu_percent=0)
    recent = ended_worker(age_days=0.01)
    holding = ended_worker(age_days=1)
    running = Task.objects.create(func_path=FUNC, timeout=60, state=TaskState.RUNNING,
                                  worker=holding)
    alive = Worker.objects.create(node="n", state=WorkerState.RUNNING)

    report = retention.prune()

    assert ids(Worker) == {recent.pk, holding.pk, alive.pk}
    assert report.workers == 1
    task.refresh_from_db()
    running.refresh_from_db()
    assert (task.worker_id, running.worker_id) == (None, holding.pk)
    kept = TaskAttempt.objects.get()
    assert (kept.worker_id, kept.worker_label) == (None, f"worker {gone.pk}")
    assert not Heartbeat.objects.filter(worker_id=gone.pk).exists()
    page = admin_client.get(reverse("admin:workers_task_change", args=[task.pk]))
    assert page.status_code == 200
    assert f"worker {gone.pk}" in page.content.decode()


@pytest.mark.django_db(transaction=True)  # the foreign key is checked when a commit is real
def test_a_task_naming_a_worker_without_its_attempt_does_not_block_pruning(keep):
    gone = ended_worker(age_days=1)
    stray = finished(age_days=0.1, worker=gone)  # no attempt row by that worker

    retention.prune()

    assert ids(Worker) == set()
    stray.refresh_from_db()
    assert stray.worker_id is None


def test_a_worker_with_a_long_history_goes_in_bounded_batches(keep):
    gone = ended_worker(age_days=1)
    tasks = [finished(age_days=0.1, worker=gone) for _ in range(5)]
    for task in tasks:
        attempt(task, worker=gone)

    first = retention.prune(batch_size=2, max_batches=1)

    assert (first.workers, first.more) == (0, True)
    assert Task.objects.filter(worker=gone).count() == 3
    calls = 1
    while retention.prune(batch_size=2, max_batches=1).more:
        calls += 1
        assert calls < 10
    assert ids(Worker) == set()
    assert not TaskAttempt.objects.filter(worker_id__isnull=False).exists()
    assert ids(Task) == {task.pk for task in tasks}


def test_old_samples_go(keep):
    worker = Worker.objects.create(node="n", state=WorkerState.RUNNING)
    at = [timezone.now() - timedelta(hours=hours) for hours in (3, 2, 0)]
    samples = [Heartbeat.objects.create(worker=worker, at=moment, rss_bytes=1, cpu_percent=0)
               for moment in at]

    report = retention.prune()

    assert ids(Heartbeat) == {samples[-1].pk}
    assert report.samples == 2


# --- Every pruning statement goes through an index ---

BIG_TABLES = ("workers_task", "workers_taskattempt", "workers_taskdependency",
              "workers_heartbeat", "workers_worker", "simulations_simulation",
              "simulations_sweep")


def _fill_everything_prunable() -> None:
    before, after = finished(has_dependents=True), finished()
    TaskDependency.objects.create(task=after, depends_on=before, satisfied=True)
    gone = ended_worker(age_days=1)
    attempt(before, worker=gone)
    Heartbeat.objects.create(worker=gone, at=days_ago(1), rss_bytes=1, cpu_percent=0)
    alive = Worker.objects.create(node="n", state=WorkerState.RUNNING)
    Heartbeat.objects.create(worker=alive, at=days_ago(1), rss_bytes=1, cpu_percent=0)


class Statements:
    """Records each statement with its parameters as bound (SQLite plans differ by that)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH")):
            self.seen.append((sql, params))
        return execute(sql, params, many, context)


def _scans(plan: str) -> list[str]:
    """Full scans of the big tables in a plan (PostgreSQL or SQLite wording)."""
    tables = "|".join(BIG_TABLES)
    pattern = rf"(Seq Scan on|\bSCAN) ({tables})\b"
    return [line for line in plan.splitlines() if re.search(pattern, line)]


def _plan(sql: str, params: Any = None) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Small test tables make a scan cheapest; with scans priced out, a scan left in
            # the plan means that no index can answer the statement.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}", params)
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return "\n".join(" ".join(str(col) for col in row) for row in cursor.fetchall())


def test_every_pruning_statement_uses_an_index(keep):
    _fill_everything_prunable()
    statements = Statements()
    with connection.execute_wrapper(statements):
        report = retention.prune()
    assert (report.tasks, report.workers, report.samples) == (2, 1, 1)

    assert len(statements.seen) >= 8
    with transaction.atomic():
        plans = [(sql, _plan(sql, params)) for sql, params in statements.seen]
    if connection.vendor == "sqlite":
        # Clearing and deleting an ended worker finds its tasks by a scan on SQLite: the
        # (worker, id) index is PostgreSQL's only (migration 0007), as it slowed SQLite's
        # drain by a third. Everything else must use an index there too.
        plans = [(sql, plan) for sql, plan in plans if not _names_a_worker(sql)]
    scanning = [f"{sql}\n{plan}" for sql, plan in plans if _scans(plan)]
    assert scanning == [], "\n\n".join(scanning)
    assert any("task_finished_idx" in plan for _, plan in plans)
    assert any("worker_ended_idx" in plan for _, plan in plans)


def _names_a_worker(sql: str) -> bool:
    return '"workers_task"."worker_id" IN' in sql or sql.startswith('DELETE FROM "workers_worker"')


def test_the_index_check_sees_a_scan(keep):
    plan = _plan('SELECT id FROM "workers_task" WHERE "error" = \'x\'')
    assert _scans(plan), plan
    if connection.vendor == "sqlite":  # SQLite's plan of a delete shows its foreign-key checks
        plan = _plan('DELETE FROM "workers_worker" WHERE "id" = 1')
        assert any("workers_task" in line for line in _scans(plan)), plan


# --- PostgreSQL: no scan anywhere, the foreign-key checks of the deletes included ---

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="pg_stat_xact_user_tables counts the scans of foreign-key checks; SQLite's plans "
    "show them in EXPLAIN QUERY PLAN, checked above",
)


def _seq_scans() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # run the deferred checks now
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        cursor.execute(
            "SELECT relname, seq_scan FROM pg_stat_xact_user_tables WHERE relname = ANY(%s)",
            [list(BIG_TABLES)],
        )
        return dict(cursor.fetchall())


def _scans_while_pruning() -> dict[str, int]:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    _fill_everything_prunable()
    before = _seq_scans()
    report = retention.prune()
    assert (report.tasks, report.workers, report.samples) == (2, 1, 1)
    after = _seq_scans()
    grown = {table: n - before.get(table, 0) for table, n in after.items()}
    return {table: n for table, n in grown.items() if n}


@postgres_only
def test_pruning_scans_no_table_even_in_foreign_key_checks(keep):
    assert _scans_while_pruning() == {}


@postgres_only
def test_the_scan_counter_sees_the_check_of_an_unindexed_foreign_key(keep):
    with connection.cursor() as cursor:
        cursor.execute('DROP INDEX "task_worker_idx"')  # undone with the test's transaction
    assert "workers_task" in _scans_while_pruning()

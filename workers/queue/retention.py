"""Retention: delete finished tasks, ended workers and old samples in bounded batches.

Every deadline is the database's ``now()`` minus a setting, so no node's clock decides
what is old. Each batch is one short transaction that picks its rows through an index
(``task_finished_idx``, ``worker_ended_idx``, ``heartbeat_at_idx``; see ``literals`` for
how SQLite is brought to use the partial ones) and deletes them by primary key; what
points at a deleted row is deleted or cleared through its own index.

What is kept although old:
- a finished task that an unfinished task still depends on (deleting it would drop the
  edge the dependent waits on);
- a task that a row of another app refers to (a simulation or sweep shows its state,
  progress and attempts from it): it goes once that row is deleted;
- an ended worker still named by a RUNNING task (the reclaim of that task needs it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, QuerySet

from .. import conf
from ..charts import sampling
from ..models import Heartbeat, Task, TaskAttempt, TaskDependency, TaskQuerySet, Worker
from ..states import FINISHED_TASK_STATES, TaskState, WorkerState
from ..web import logs, owners
from .clock import ago
from .literals import Literal, literals

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_BATCHES = 20  # per kind and call: a tick never spends long here; the next call goes on
ENDED_WORKER_STATES = (WorkerState.DEAD, WorkerState.FAILED)
UNFINISHED_TASK_STATES = tuple(s for s in TaskState if s not in FINISHED_TASK_STATES)

# One batch of a kind: (report, age in seconds, batch size) -> whether it was the last one.
Batch = Callable[["PruneReport", float, int], bool]


@dataclass
class PruneReport:
    tasks: int = 0
    attempts: int = 0
    dependencies: int = 0
    workers: int = 0
    samples: int = 0
    chart_samples: int = 0
    more: bool = False  # a batch limit was reached: more is old enough to go

    def __str__(self) -> str:
        return (
            f"pruned {self.tasks} tasks ({self.attempts} attempts, {self.dependencies} "
            f"dependencies), {self.workers} workers, {self.samples} samples"
        )


def prune(*, batch_size: int = BATCH_SIZE, max_batches: int = MAX_BATCHES) -> PruneReport:
    """Delete what has outlived its retention setting, at most ``max_batches`` of each kind.

    A retention of 0 keeps that kind for ever (WORKER_RESULT_RETENTION=0). Call it outside
    a transaction: each batch is a transaction of its own, so locks are held briefly.
    ``PruneReport.more`` says that a limit stopped it before everything old was gone.
    """
    settings = conf.get()
    report = PruneReport()
    kinds: list[tuple[Batch, float]] = [
        (_task_batch, settings.result_retention),
        (_worker_batch, settings.cleanup_age),
        (_sample_batch, settings.heartbeat_retention),
    ]
    for batch, age in kinds:
        if age > 0 and not _repeat(partial(batch, report, age, batch_size), max_batches):
            report.more = True
    if not _repeat(partial(_chart_batch, report, batch_size), max_batches):
        report.more = True
    if report.tasks or report.workers or report.samples or report.chart_samples:
        logger.info("%s", report, extra={"pruned": asdict(report)})
    return report


def _repeat(batch: Callable[[], bool], max_batches: int) -> bool:
    """Run ``batch`` until it says it was the last one; False if the limit came first."""
    return any(batch() for _ in range(max_batches))


# --- Tasks ---


def expired_tasks(retention: float) -> TaskQuerySet:
    """Finished tasks older than ``retention`` seconds that nothing still needs, oldest first."""
    rows = Task.objects.filter(
        state__common_in=literals(FINISHED_TASK_STATES), finished_at__lt=ago(retention)
    ).exclude(Exists(_waiting_dependents()))
    return owners.not_owned(rows).order_by("finished_at")


def _waiting_dependents() -> QuerySet[TaskDependency]:
    return TaskDependency.objects.filter(
        depends_on=OuterRef("pk"), task__state__in=UNFINISHED_TASK_STATES
    )


def _task_batch(report: PruneReport, retention: float, size: int) -> bool:
    with transaction.atomic():
        picked = expired_tasks(retention).select_for_update(skip_locked=True)
        ids = list(picked.values_list("pk", flat=True)[:size])
        if not ids:
            return True
        # Django's collector honours each relation's on_delete, each through its FK index.
        _, counts = Task.objects.filter(pk__in=ids).only("pk").delete()
    logs.remove_task_logs(ids)  # their attempts' log files on this machine, once committed
    report.tasks += counts.get(Task._meta.label, 0)
    report.attempts += counts.get(TaskAttempt._meta.label, 0)
    report.dependencies += counts.get(TaskDependency._meta.label, 0)
    return len(ids) < size


# --- Workers ---


def expired_workers(cleanup_age: float) -> QuerySet[Worker]:
    """Ended workers stopped over ``cleanup_age`` seconds ago, no task still running there."""
    holding = Task.objects.filter(state=Literal(TaskState.RUNNING), worker=OuterRef("pk"))
    return (
        Worker.objects.filter(
            state__common_in=literals(ENDED_WORKER_STATES),
            stopped_at__lt=ago(cleanup_age),
        )
        .exclude(Exists(holding))
        .order_by("stopped_at")
    )


def _worker_batch(report: PruneReport, cleanup_age: float, size: int) -> bool:
    ids = list(expired_workers(cleanup_age).values_list("pk", flat=True)[:size])
    if not ids:
        return True
    with transaction.atomic():
        if _release(ids, size):
            return False  # references cleared; the workers go in a later batch
        # The collector would clear each relation again: all of them are clear already.
        ended = Worker.objects.filter(pk__in=ids, state__common_in=literals(ENDED_WORKER_STATES))
        report.workers += ended._raw_delete(connection.alias)
    return len(ids) < size


def _release(ids: list[int], size: int) -> int:
    """Clear up to ``size`` rows that point at these workers, each kind through its index.

    Bounded, so that a worker that ran a million tasks goes in many short batches.
    """
    references: list[tuple[QuerySet[Any], dict[str, None]]] = [
        (Task.objects.filter(worker_id__in=ids), {"worker": None}),
        (TaskAttempt.objects.filter(worker_id__in=ids), {"worker": None}),
    ]
    for rows, cleared in references:
        some = list(rows.order_by().values_list("pk", flat=True)[:size])
        if some:
            rows.model._default_manager.filter(pk__in=some).update(**cleared)
            return len(some)
    samples = Heartbeat.objects.filter(worker_id__in=ids).order_by().values("pk")[:size]
    deleted, _ = Heartbeat.objects.filter(pk__in=samples).delete()
    return deleted


# --- Heartbeat samples ---


def _sample_batch(report: PruneReport, retention: float, size: int) -> bool:
    old = Heartbeat.objects.filter(at__lt=ago(retention)).order_by("at").values("pk")[:size]
    deleted, _ = Heartbeat.objects.filter(pk__in=old).delete()
    report.samples += deleted
    return deleted < size


# --- The charts' samples ---


def _chart_batch(report: PruneReport, size: int) -> bool:
    """Samples past their span's keeping time (a day of minutes, eight days of hours)."""
    deleted, done = sampling.prune_batch(size)
    report.chart_samples += deleted
    return done

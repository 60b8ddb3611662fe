"""The live task views' services: ETA, scheduled tasks, a queue's page, and bulk actions on
everything a filter matches (through ``queue.cancel`` and ``queue.retry``, one task at a time).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.db.models.functions import Now

from .. import queue
from ..exceptions import CrucibleError
from ..models import PausedQueue, Task
from ..panel.cards import duration
from ..queue import clock
from ..queue.literals import Literal
from ..states import FINISHED_TASK_STATES, TaskState
from . import audit
from .listing import COUNT_CAP

logger = logging.getLogger(__name__)

SCHEDULED = "SCHEDULED"  # a label, not a state: QUEUED with a run_after still ahead
PAUSED = "PAUSED"  # a label, not a state: QUEUED in a paused queue
RUNNING_LISTED = 50  # running tasks a queue's page lists


class BulkError(CrucibleError):
    """A bulk action that cannot be carried out as asked."""


# --- ETA ---


def eta(progress: float | None, elapsed: float) -> float | None:
    """Seconds left at the attempt's average rate so far: (1 - p) / (p / elapsed)."""
    if progress is None or progress <= 0 or elapsed <= 0:
        return None
    return max(elapsed * (1 - progress) / progress, 0.0)


def eta_text(progress: float | None, elapsed: float) -> str:
    left = eta(progress, elapsed)
    return "" if left is None else f"{duration(left)} left"


def task_eta(task: Task, now: datetime) -> str:
    """A running task's ETA from its current attempt's start (empty when unknown)."""
    started = task.last_attempted_at
    if task.state != TaskState.RUNNING or started is None:
        return ""
    return eta_text(task.progress, (now - started).total_seconds())


# --- Scheduled: QUEUED, but not before its run_after (by the database's clock) ---


def _queued() -> Q:
    """QUEUED in the statement's text, told to SQLite as common (``literals.CommonExact``): it
    then takes ``task_queued_idx`` or ``task_scheduled_idx``, partial indexes of queued
    tasks, rather than reading and sorting every queued task."""
    return Q(state__common=Literal(TaskState.QUEUED))


def scheduled(tasks: QuerySet[Task]) -> QuerySet[Task]:
    return tasks.filter(_queued(), run_after__gt=Now())


def queued_now(tasks: QuerySet[Task]) -> QuerySet[Task]:
    """Queued tasks a worker may claim now, as far as time goes."""
    due = Q(run_after__isnull=True) | Q(run_after__lte=Now())
    return tasks.filter(_queued()).filter(due)


def mark_labels(tasks: Iterable[Task]) -> None:
    """Tell each queued task whether it is scheduled (by the database's clock) or held by
    its queue's pause: two statements for a page of tasks, none for a page without any."""
    tasks = list(tasks)
    queued = [task for task in tasks if task.state == TaskState.QUEUED]
    if not queued:
        return
    now = clock.now()
    paused = set(PausedQueue.objects.filter(name__in={task.queue for task in queued})
                 .values_list("name", flat=True))
    for task in queued:
        task.is_scheduled = task.run_after is not None and task.run_after > now  # type: ignore[attr-defined]
        task.is_paused = task.queue in paused  # type: ignore[attr-defined]


def shown_state(task: Task) -> str:
    if getattr(task, "is_paused", False):
        return PAUSED
    return SCHEDULED if getattr(task, "is_scheduled", False) else str(task.state)


# --- A queue's page ---


@dataclass(frozen=True, slots=True)
class QueueSummary:
    name: str
    waiting: int
    queued: int  # claimable now (the depth)
    scheduled: int
    running: int
    failed_last_hour: int
    running_tasks: list[Task] = field(default_factory=list)
    capped: bool = False  # a count stopped at COUNT_CAP


def _bounded(tasks: QuerySet[Task]) -> int:
    return tasks.order_by()[: COUNT_CAP + 1].count()


def queue_summary(name: str, listed: int = RUNNING_LISTED) -> QueueSummary:
    """Counts of one queue through ``task_state_idx`` (state, queue), each bounded, and
    its newest ``listed`` running tasks."""
    from .status import failed_since

    mine = Task.objects.filter(queue=name)
    counts = {
        "waiting": _bounded(mine.filter(state=TaskState.WAITING)),
        "queued": _bounded(queued_now(mine)),
        "scheduled": _bounded(scheduled(mine)),
        "running": _bounded(mine.filter(state=TaskState.RUNNING)),
        "failed_last_hour": _bounded(failed_since(3600).filter(queue=name)),
    }
    running = list(mine.filter(state=TaskState.RUNNING).order_by("-id")[:listed]) if listed else []
    return QueueSummary(name=name, running_tasks=running,
                        capped=any(n > COUNT_CAP for n in counts.values()), **counts)


# --- Bulk actions ---


@dataclass(frozen=True, slots=True)
class BulkPlan:
    """What a bulk action would do to the tasks a filter matches (up to ``upto``)."""

    verb: str  # "cancel" or "retry"
    ids: list[int]  # the tasks it acts on
    matched: int
    running: int  # cancel: asked to stop, they end within a second
    skipped: int  # cancel: already finished; retry: not finished
    upto: int  # the newest task matched: later arrivals are left alone


VERBS: dict[str, tuple[Callable[[str], bool], Callable[[int], Task]]] = {
    "cancel": (lambda state: state not in FINISHED_TASK_STATES, queue.cancel),
    "retry": (lambda state: state in FINISHED_TASK_STATES, queue.retry),
}


def plan(verb: str, tasks: QuerySet[Task], upto: int | None = None) -> BulkPlan:
    """Read (id, state) of every match, at most ``COUNT_CAP`` of them, in one query."""
    if verb not in VERBS:
        raise BulkError(f"unknown action {verb!r}: use cancel or retry")
    rows = tasks.order_by()
    if upto is not None:
        rows = rows.filter(pk__lte=upto)
    found = list(rows.values_list("pk", "state")[: COUNT_CAP + 1])
    if len(found) > COUNT_CAP:
        raise BulkError(
            f"more than {COUNT_CAP:,} tasks match: narrow the filter or search first"
        )
    acts_on = VERBS[verb][0]
    ids = sorted(pk for pk, state in found if acts_on(state))
    return BulkPlan(
        verb=verb,
        ids=ids,
        matched=len(found),
        running=sum(1 for _, state in found if state == TaskState.RUNNING),
        skipped=len(found) - len(ids),
        upto=max((pk for pk, _ in found), default=0),
    )


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    done: int
    refused: list[str]


def carry_out(bulk: BulkPlan, user: Any) -> BulkOutcome:
    """Each task through its service, in its own transaction; each one in the admin log."""
    service = VERBS[bulk.verb][1]
    done, refused = 0, []
    for task_id in bulk.ids:
        try:
            task = service(task_id)
        except CrucibleError as exc:
            refused.append(f"task {task_id}: {exc}")
            continue
        if _took(bulk.verb, task):
            audit.record(user, task, bulk.verb, detail="bulk")
            done += 1
    logger.info("bulk %s", bulk.verb, extra={"done": done, "planned": len(bulk.ids)})
    return BulkOutcome(done=done, refused=refused)


def _took(verb: str, task: Task) -> bool:
    if verb == "cancel":
        return task.state == TaskState.CANCELLED or task.cancel_requested_at is not None
    return task.state in (TaskState.QUEUED, TaskState.WAITING)

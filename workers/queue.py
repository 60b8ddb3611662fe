"""The queue: the only place that changes a task's state.

Every write for a running attempt is fenced by (worker id, attempt): a worker that lost its
attempt (lease expired, reclaimed, aborted) matches no row and is told to stop.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from . import conf, dependencies, doorbell
from .claim import ClaimedTask, claim, record_success, succeed_and_claim_pg
from .exceptions import LostAttempt, TaskNotFound
from .models import Task, TaskAttempt, TaskQuerySet, Worker
from .spec import TaskSpec, validate
from .states import TASK_TRANSITIONS, Outcome, TaskState, sources

logger = logging.getLogger(__name__)

CRASH_OUTCOMES = frozenset({Outcome.CRASHED, Outcome.WORKER_LOST})
BACKOFF_OUTCOMES = frozenset({Outcome.ERROR, Outcome.TIMED_OUT, Outcome.CRASHED})
TAIL_CHARS = 1000

__all__ = ["ClaimedTask", "claim_next", "enqueue"]


def move(queryset: TaskQuerySet, target: str, **fields: Any) -> int:
    """The one transition function: update only rows whose state may move to ``target``."""
    allowed = sources(TASK_TRANSITIONS, target)
    return queryset.filter(state__in=allowed).update(state=target, **fields)


def enqueue(spec: TaskSpec) -> Task:
    """Validate and store a task, then wake the workers of its queue."""
    validate(spec)
    if not spec.depends_on:
        return _create(spec, TaskState.QUEUED, 0)
    with transaction.atomic():
        predecessors = dependencies.check_predecessors(spec.depends_on)
        pending = dependencies.unfinished(predecessors)
        task = _create(spec, TaskState.WAITING if pending else TaskState.QUEUED, pending)
        dependencies.link(task, predecessors)
    return task


def _create(spec: TaskSpec, state: str, pending: int) -> Task:
    settings = conf.get()
    task = Task.objects.create(
        state=state,
        pending_dependencies=pending,
        func_path=spec.func_path,
        args=spec.args,
        kwargs=spec.kwargs,
        queue=spec.queue or settings.queue_name,
        priority=spec.priority,
        max_attempts=spec.max_attempts or settings.max_attempts,
        timeout=spec.timeout or settings.task_timeout,
        memory_mb=spec.memory_mb,
        retry_backoff=spec.retry_backoff,
        run_after=spec.run_after,
    )
    if state == TaskState.QUEUED:
        transaction.on_commit(lambda: doorbell.ring_all(f"q:{task.queue}"))
    return task


def claim_next(worker_id: int, queues: list[str]) -> ClaimedTask | None:
    now = timezone.now()
    lease_until = now + timedelta(seconds=conf.get().lease_ttl)
    return claim(worker_id, queues, now, lease_until)


@dataclass(frozen=True, slots=True)
class Ending:
    """How an attempt ended, as the worker (or the monitor) saw it."""

    outcome: str
    error: str = ""
    traceback: str = ""
    peak_rss_bytes: int | None = None
    log_tail: str = ""
    exception_class: str = ""


def _fenced(token: ClaimedTask) -> TaskQuerySet:
    return Task.objects.filter(
        pk=token.id, worker_id=token.worker_id, attempt=token.attempt, state=TaskState.RUNNING
    )


def _peak(value: int | None) -> Any:
    if value is None:
        return F("peak_rss_bytes")
    return Greatest(Coalesce(F("peak_rss_bytes"), Value(0)), Value(value))


def _record_attempt(task_id: int, number: int, worker_id: int | None, started_at: datetime | None,
                    ending: Ending) -> None:
    worker_label = f"worker {worker_id}" if worker_id else ""
    TaskAttempt.objects.create(
        task_id=task_id,
        number=number,
        worker_id=worker_id,
        worker_label=worker_label,
        started_at=started_at,
        finished_at=timezone.now(),
        outcome=ending.outcome,
        error=ending.error,
        traceback=ending.traceback,
        exception_class=ending.exception_class,
        peak_rss_bytes=ending.peak_rss_bytes,
        log_tail=ending.log_tail[-TAIL_CHARS:],
    )


def renew(token: ClaimedTask) -> bool:
    """Extend the lease; False means the attempt is no longer this worker's."""
    until = timezone.now() + timedelta(seconds=conf.get().lease_ttl)
    return _fenced(token).update(lease_expires_at=until) == 1


def report_progress(token: ClaimedTask, fraction: float | None, message: str) -> bool:
    fields: dict[str, Any] = {"progress_message": message[:500]}
    if fraction is not None:
        fields["progress"] = min(max(fraction, 0.0), 1.0)
    return _fenced(token).update(**fields) == 1


def cancel_requested(token: ClaimedTask) -> bool:
    return _fenced(token).filter(cancel_requested_at__isnull=False).exists()


def succeed(token: ClaimedTask, result: Any, ending: Ending) -> None:
    """Store the result of the attempt, unless it was lost meanwhile."""
    with transaction.atomic():
        _succeed(token, result, ending)


def succeed_and_claim(token: ClaimedTask, result: Any, ending: Ending,
                      queues: list[str]) -> ClaimedTask | None:
    """Store a result and claim the next task in one transaction: one commit per task."""
    if connection.vendor == "postgresql" and not token.has_dependents:
        now = timezone.now()
        lease_until = now + timedelta(seconds=conf.get().lease_ttl)
        recorded, claimed = succeed_and_claim_pg(
            token,
            result,
            finished=now,
            peak=ending.peak_rss_bytes,
            log_tail=ending.log_tail[-TAIL_CHARS:],
            queues=queues,
            lease_until=lease_until,
        )
        if not recorded:
            logger.warning("result of task %s attempt %s discarded: no longer ours",
                           token.id, token.attempt)
        return claimed
    with transaction.atomic():
        _succeed(token, result, ending)
        return claim_next(token.worker_id, queues)


def _succeed(token: ClaimedTask, result: Any, ending: Ending) -> None:
    tail = ending.log_tail[-TAIL_CHARS:]
    if not record_success(token, result, timezone.now(), ending.peak_rss_bytes, tail):
        raise LostAttempt(f"task {token.id} attempt {token.attempt} is no longer ours")
    if token.has_dependents:
        dependencies.release(token.id)


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential delay with equal jitter: each retry waits at least as long as the last."""
    delay = min(base * 2.0 ** max(attempt - 1, 0), cap)
    return delay / 2 + random.uniform(0, delay / 2)


@dataclass(frozen=True, slots=True)
class Verdict:
    state: str
    delay: float = 0.0
    quarantined: bool = False


def decide(task: Task, ending: Ending) -> Verdict:
    """What becomes of a task whose attempt ended without success."""
    settings = conf.get()
    crashes = task.crash_count + (1 if ending.outcome in CRASH_OUTCOMES else 0)
    if ending.outcome == Outcome.CANCELLED or task.cancel_requested_at is not None:
        return Verdict(TaskState.CANCELLED)
    if crashes >= settings.quarantine_after:
        return Verdict(TaskState.FAILED, quarantined=True)
    if task.attempt - task.attempt_base >= task.max_attempts:
        return Verdict(TaskState.FAILED)
    if ending.outcome not in BACKOFF_OUTCOMES:
        return Verdict(TaskState.QUEUED)
    base = task.retry_backoff if task.retry_backoff is not None else settings.retry_backoff
    return Verdict(TaskState.QUEUED, delay=backoff(task.attempt - task.attempt_base, base,
                                                   settings.retry_backoff_max))


def _end(task: Task, ending: Ending, started_at: datetime | None) -> str:
    """Record a failed attempt of a locked, running task and move it on."""
    verdict = decide(task, ending)
    now = timezone.now()
    fields: dict[str, Any] = {
        "lease_expires_at": None,
        "error": ending.error,
        "peak_rss_bytes": _peak(ending.peak_rss_bytes),
    }
    if ending.outcome in CRASH_OUTCOMES:
        fields["crash_count"] = F("crash_count") + 1
    if verdict.state == TaskState.QUEUED:
        fields["run_after"] = now + timedelta(seconds=verdict.delay) if verdict.delay else None
    else:
        fields["finished_at"] = now
    if verdict.quarantined:
        fields["quarantined_at"] = now
        fields["error"] = (
            f"Quarantined: took its worker down {conf.get().quarantine_after} times. "
            f"Last: {ending.error}"
        )
    if task.worker_id is None:
        raise LostAttempt(f"task {task.pk} has no worker")
    fenced = Task.objects.filter(
        pk=task.pk, worker_id=task.worker_id, attempt=task.attempt, state=TaskState.RUNNING
    )
    if not move(fenced, verdict.state, **fields):
        raise LostAttempt(f"task {task.pk} attempt {task.attempt} is no longer running")
    _record_attempt(task.pk, task.attempt, task.worker_id, started_at, ending)
    if verdict.state != TaskState.QUEUED and task.has_dependents:
        dependencies.halt(task.pk)
    if verdict.state == TaskState.QUEUED and not verdict.delay:
        transaction.on_commit(lambda: doorbell.ring_all(f"q:{task.queue}"))
    return verdict.state


def fail(token: ClaimedTask, ending: Ending) -> str:
    """Record an attempt that did not succeed; retry, fail, cancel or quarantine the task."""
    with transaction.atomic():
        task = _fenced(token).select_for_update().first()
        if task is None:
            raise LostAttempt(f"task {token.id} attempt {token.attempt} is no longer ours")
        return _end(task, ending, token.started_at)


def reclaim(task: Task, ending: Ending) -> str | None:
    """End a running attempt on behalf of a worker that cannot (gone, lease expired)."""
    with transaction.atomic():
        current = (
            Task.objects.select_for_update()
            .filter(pk=task.pk, attempt=task.attempt, state=TaskState.RUNNING)
            .first()
        )
        if current is None:
            return None
        return _end(current, ending, current.last_attempted_at)


def reclaim_worker(worker: Worker, outcome: str, reason: str) -> list[int]:
    """Put back (or fail) every task a lost worker was running."""
    reclaimed = []
    for task in Task.objects.running().filter(worker=worker):
        ending = Ending(outcome=outcome, error=reason, log_tail=worker.log_tail)
        if reclaim(task, ending) is not None:
            reclaimed.append(task.pk)
            logger.warning("reclaimed task %s from worker %s: %s", task.pk, worker.pk, reason)
    return reclaimed


def reclaim_expired_leases() -> list[int]:
    reclaimed = []
    expired = Task.objects.running().filter(lease_expires_at__lt=timezone.now())
    for task in expired:
        ending = Ending(outcome=Outcome.LEASE_EXPIRED, error="lease expired: no renewal in time")
        if reclaim(task, ending) is not None:
            reclaimed.append(task.pk)
    return reclaimed


def get(task_id: int) -> Task:
    try:
        return Task.objects.get(pk=task_id)
    except Task.DoesNotExist:
        raise TaskNotFound(f"no task with id {task_id}") from None


def cancel(task_id: int) -> Task:
    """Cancel a waiting or queued task at once; ask the worker of a running one to stop it."""
    task = get(task_id)
    now = timezone.now()
    stop_now = Task.objects.filter(pk=task_id, state__in=[TaskState.WAITING, TaskState.QUEUED])
    if move(stop_now, TaskState.CANCELLED, finished_at=now, error="Cancelled before it ran"):
        if task.has_dependents:
            dependencies.halt(task_id)
        return get(task_id)
    if Task.objects.running().filter(pk=task_id).update(cancel_requested_at=now):
        worker = task.worker
        if worker is not None:
            transaction.on_commit(lambda: wake(worker))
    return get(task_id)


def retry(task_id: int) -> Task:
    """Give a finished task a fresh budget of attempts (releases a quarantine)."""
    task = get(task_id)
    finished = Task.objects.filter(pk=task_id).finished()
    target = TaskState.WAITING if task.pending_dependencies else TaskState.QUEUED
    moved = move(
        finished,
        target,
        attempt_base=F("attempt"),
        crash_count=0,
        quarantined_at=None,
        cancel_requested_at=None,
        finished_at=None,
        run_after=None,
        error="",
        result=None,
        progress=None,
        progress_message="",
    )
    if moved:
        transaction.on_commit(lambda: doorbell.ring_all(f"q:{task.queue}"))
    return get(task_id)


def wake(worker: Worker) -> None:
    """Ask one worker to look at its control flags now."""
    message = f"w:{worker.pk}"
    doorbell.ring(worker.doorbell, message)
    if worker.node and connection.vendor == "postgresql":
        doorbell.notify(message)

"""The periodic tick: startup timeouts, vanished processes, expired leases, pruning.

Live workers run it themselves, guarded so that one process per node runs it per interval.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from . import conf, launcher, lifecycle, processes, queue
from .models import Heartbeat, TickGuard, Worker
from .runtime import logs
from .states import ACTIVE_WORKER_STATES, Outcome, WorkerState

logger = logging.getLogger(__name__)
ABORT_GRACE = 3.0
PRUNE_EVERY = 60.0


@dataclass
class TickReport:
    timed_out: list[int] = field(default_factory=list)
    gone: list[int] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)
    reclaimed: list[int] = field(default_factory=list)
    pruned_workers: int = 0
    pruned_samples: int = 0


def acquire(name: str, holder: str, interval: float) -> bool:
    """Take the named guard if nobody took it within ``interval`` seconds."""
    now = timezone.now()
    taken = TickGuard.objects.filter(name=name, ran_at__lte=now - timedelta(seconds=interval))
    if taken.update(holder=holder, ran_at=now):
        return True
    try:
        with transaction.atomic():  # a savepoint: losing the race must not spoil the caller
            TickGuard.objects.create(name=name, holder=holder, ran_at=now)
    except IntegrityError:
        return False
    return True


def maybe_tick(holder: str) -> TickReport | None:
    """Run the tick if this process wins this interval's guard for its node."""
    settings = conf.get()
    if not acquire(f"tick:{settings.node_address}", holder, settings.tick_interval * 0.9):
        return None
    return tick()


def tick() -> TickReport:
    report = TickReport()
    _startup_timeouts(report)
    _vanished(report)
    _overdue_aborts(report)
    report.reclaimed += queue.reclaim_expired_leases()
    if acquire("prune", "tick", PRUNE_EVERY):
        _prune(report)
    return report


def log_tail(worker_id: int) -> str:
    return logs.tail(logs.log_path(conf.get().log_dir, worker_id), queue.TAIL_CHARS)


def fail_worker(worker: Worker, reason: str, outcome: str = Outcome.WORKER_LOST) -> list[int]:
    """Mark a worker FAILED and put its tasks back."""
    tail = log_tail(worker.pk)
    lifecycle.finish(worker.pk, WorkerState.FAILED, reason=reason, log_tail=tail)
    worker.log_tail = tail
    return queue.reclaim_worker(worker, outcome, reason)


def _local() -> Q:
    return Q(node=conf.get().node_address)


def _startup_timeouts(report: TickReport) -> None:
    limit = conf.get().startup_timeout
    late = Worker.objects.filter(_local(), state=WorkerState.STARTING,
                                 created_at__lt=timezone.now() - timedelta(seconds=limit))
    for worker in late:
        launcher.kill(worker)
        fail_worker(worker, f"Did not start within WORKER_STARTUP_TIMEOUT ({limit:g} s).")
        report.timed_out.append(worker.pk)


def _vanished(report: TickReport) -> None:
    candidates = Worker.objects.filter(
        _local(), state__in=[WorkerState.RUNNING, WorkerState.DRAINING], pid__isnull=False
    )
    for worker in candidates:
        if not processes.is_worker_process(worker.pid, worker.process_started_at):
            report.reclaimed += fail_worker(worker, "Process gone: it exited without saying so "
                                                    "(killed, crashed or out of memory).")
            report.gone.append(worker.pk)


def _overdue_aborts(report: TickReport) -> None:
    cutoff = timezone.now() - timedelta(seconds=ABORT_GRACE)
    overdue = Worker.objects.filter(_local(), state__in=ACTIVE_WORKER_STATES,
                                    abort_requested_at__lt=cutoff)
    for worker in overdue:
        killed = launcher.kill(worker)
        reason = "Aborted: killed after it did not stop within the grace period."
        if not killed:
            reason = "Aborted: its process was already gone."
        report.reclaimed += fail_worker(worker, reason, Outcome.ABORTED)
        report.killed.append(worker.pk)


def _prune(report: TickReport) -> None:
    settings = conf.get()
    now = timezone.now()
    old = now - timedelta(seconds=settings.cleanup_age)
    report.pruned_workers, _ = Worker.objects.filter(
        state__in=[WorkerState.DEAD, WorkerState.FAILED], stopped_at__lt=old
    ).delete()
    stale = now - timedelta(seconds=settings.heartbeat_retention)
    report.pruned_samples, _ = Heartbeat.objects.filter(at__lt=stale).delete()

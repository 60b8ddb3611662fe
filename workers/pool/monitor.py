"""The periodic tick: startup timeouts, vanished processes, expired leases, pruning.

Live workers run it themselves: one process per node per interval, chosen by a file lock
(no database statement for the processes that do not run it). Every deadline is judged by
the database's clock. A tick survives any one worker's or task's data: it logs and moves on.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass, field
from typing import Any

import psutil
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import BooleanField, ExpressionWrapper, Q

from .. import conf, queue
from ..models import TickGuard, Worker
from ..queue.clock import Now, ago
from ..runtime import logs
from ..states import ACTIVE_WORKER_STATES, Outcome, WorkerState
from ..web.logs import sweep_orphans
from . import learning, lifecycle, processes, stamps

logger = logging.getLogger(__name__)
# What only some ticks need (runs, pruning, the charts' samples, killing a worker) is
# imported when first needed: a worker starts, and serves its first task, without them.
ABORT_GRACE = 3.0
PRUNE_EVERY = 60.0
SAMPLE_EVERY = 20.0  # a minute's chart sample is written within this long of its end
LEARN_EVERY = 5.0  # finished attempts' peaks reach their functions' estimates within this
# SQLite: a commit reaches the disk within this long (synchronous=NORMAL syncs the log at
# checkpoints, and the log is checkpointed on its own only once it is large: settings.py)
CHECKPOINT_EVERY = 5.0


@dataclass
class TickReport:
    timed_out: list[int] = field(default_factory=list)
    gone: list[int] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)
    reclaimed: list[int] = field(default_factory=list)
    pruned_tasks: int = 0
    pruned_workers: int = 0
    pruned_samples: int = 0
    swept_logs: int = 0
    learned: int = 0


def acquire(name: str, holder: str, interval: float) -> bool:
    """Take the named database guard if nobody took it within ``interval`` seconds."""
    taken = TickGuard.objects.filter(name=name, ran_at__lte=ago(interval))
    if taken.update(holder=holder, ran_at=Now()):
        return True
    if TickGuard.objects.filter(name=name).exists():
        return False
    try:
        with transaction.atomic():  # a savepoint: losing the race must not spoil the caller
            TickGuard.objects.create(name=name, holder=holder, ran_at=Now())
    except IntegrityError:
        return False
    return True


def maybe_tick() -> TickReport | None:
    """Run what is due of the tick, if it is this process's turn on its node.

    Every interval: this node's workers (startup timeouts, vanished processes, overdue
    aborts). Every tenth of a lease, at least once an interval: tasks whose lease ended or
    whose worker ended without them. Once a minute, across nodes: pruning. Every
    CHECKPOINT_EVERY on SQLite: a checkpoint. An idle pool costs the database about one
    statement per node and interval.
    """
    settings = conf.get()
    if not stamps.take_turn("tick", settings.tick_interval * 0.9):
        return None
    leases_every = max(settings.tick_interval, settings.lease_ttl / 10) * 0.9
    return tick(
        leases=stamps.take_turn("leases", leases_every),
        prune=stamps.take_turn("prune", PRUNE_EVERY),
        sample=stamps.take_turn("sample", SAMPLE_EVERY),
        learn=stamps.take_turn("learn", max(settings.tick_interval, LEARN_EVERY) * 0.9),
        checkpoint=connection.vendor == "sqlite" and stamps.take_turn("checkpoint",
                                                                      CHECKPOINT_EVERY),
    )


TICK_LEFT_FOR = 2.5  # tick intervals: the listening worker ticks after as long untaken


def leaves_the_tick(others_here: bool, tick_age: float, interval: float) -> bool:
    """Whether the worker that listens for its machine skips the node's tick: while
    another worker of the machine takes it, as one does within ``TICK_LEFT_FOR``
    intervals. A wake-up heard during a tick waited for its end (a few milliseconds on
    PostgreSQL), and every wake-up of the machine comes through that worker."""
    return others_here and tick_age < TICK_LEFT_FOR * interval


def _checkpoint() -> None:
    """SQLite: copy the log's commits into the database and sync both, without waiting
    for readers or writers (what a reader still needs stays in the log for the next)."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")


def tick(*, leases: bool = True, prune: bool = True, sample: bool = True,
         learn: bool = True, checkpoint: bool = False) -> TickReport:
    report = TickReport()
    if checkpoint:
        _checkpoint()
    live_here = _local_workers(report)
    if leases or report.gone or report.killed or report.timed_out:
        report.reclaimed += queue.reclaim_expired_leases(live_here)
    _settle_runs()
    if prune and acquire("prune", "tick", PRUNE_EVERY):
        _prune(report)
    if prune:
        _sweep_logs(report)
    if sample and acquire("sample", "tick", SAMPLE_EVERY):
        _sample()
    if learn:
        _learn(report)
    return report


def log_tail(worker_id: int) -> str:
    return logs.tail(logs.log_path(conf.get().log_dir, worker_id), queue.TAIL_CHARS)


def fail_worker(worker: Worker, reason: str, outcome: str = Outcome.WORKER_LOST,
                killed: bool = False) -> list[int]:
    """Mark a worker FAILED and put its tasks back, in one transaction.

    ``killed``: this tick SIGKILLed it, so that is its exit (recorded as -9); else unknown.
    """
    exit_code = -signal.SIGKILL if killed else None
    return lifecycle.fail(worker, reason, outcome, log_tail=log_tail(worker.pk),
                          exit_code=exit_code)


def _local_workers(report: TickReport) -> set[int]:
    """Judge this node's active workers; return those whose process is alive and running."""
    settings = conf.get()
    workers = Worker.objects.filter(node=settings.node_address, state__in=ACTIVE_WORKER_STATES)
    workers = workers.annotate(
        late=_flag(Q(state=WorkerState.STARTING, created_at__lt=ago(settings.startup_timeout))),
        abort_overdue=_flag(Q(abort_requested_at__lt=ago(ABORT_GRACE))),
    )
    live: set[int] = set()
    for worker in workers:
        try:
            if _judge(worker, report):
                live.add(worker.pk)
        except DatabaseError:
            logger.exception("tick: could not judge worker %s; moving on", worker.pk)
    return live


def _flag(condition: Q) -> ExpressionWrapper[Q]:
    return ExpressionWrapper(condition, output_field=BooleanField())


def _judge(worker: Any, report: TickReport) -> bool:
    """Fail a worker that timed out, vanished or outlived its abort; True if it lives on."""
    if worker.late:
        from . import launcher

        killed = launcher.kill(worker)
        limit = conf.get().startup_timeout
        fail_worker(worker, f"Did not start within WORKER_STARTUP_TIMEOUT ({limit:g} s).",
                    killed=killed)
        report.timed_out.append(worker.pk)
        return False
    if worker.abort_overdue:
        from . import launcher

        killed = launcher.kill(worker)
        reason = "Aborted: killed after it did not stop within the grace period."
        if not killed:
            reason = "Aborted: its process was already gone."
        report.reclaimed += fail_worker(worker, reason, Outcome.ABORTED, killed=killed)
        report.killed.append(worker.pk)
        return False
    if worker.state == WorkerState.STARTING or worker.pid is None:
        return False
    if not processes.is_worker_process(worker.pid, worker.process_started_at):
        report.reclaimed += fail_worker(worker, "Process gone: it exited without saying so "
                                                "(killed, crashed or out of memory).")
        report.gone.append(worker.pk)
        return False
    return not _stopped(worker.pid)


def _stopped(pid: int) -> bool:
    """A frozen process (SIGSTOP, a debugger) holds nothing: its tasks may be reclaimed
    once their leases end (its executor was stopped before that by its sentinel)."""
    try:
        return psutil.Process(pid).status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    except psutil.Error:
        return False


def _settle_runs() -> None:
    """End the runs whose last tasks ended without a follow-up; retry lock waiters."""
    try:
        from .. import runs

        runs.sweep()
    except DatabaseError:
        logger.exception("tick: could not settle runs; the next tick tries again")


def _sample() -> None:
    """The charts' samples of the minutes that have ended (see ``charts.sampling``)."""
    try:
        from ..charts import sampling

        sampling.sample()
    except DatabaseError:
        logger.exception("tick: could not write the charts' samples; the next tick tries again")


def _learn(report: TickReport) -> None:
    """Measured peaks of attempts that ended since the last fold, into learned estimates."""
    try:
        report.learned = learning.fold()
    except DatabaseError:
        logger.exception("tick: could not learn from measured peaks; the next tick tries again")


def _sweep_logs(report: TickReport) -> None:
    """This machine's attempt logs of tasks pruned elsewhere: a folder a minute, per node."""
    try:
        report.swept_logs = sweep_orphans()
    except OSError:
        logger.exception("tick: could not sweep the attempt logs; the next one will try again")


def _prune(report: TickReport) -> None:
    """Finished tasks past WORKER_RESULT_RETENTION, ended workers, old samples: in batches."""
    from ..queue import retention

    pruned = retention.prune()
    report.pruned_tasks = pruned.tasks
    report.pruned_workers = pruned.workers
    report.pruned_samples = pruned.samples


__all__ = ["TickReport", "acquire", "fail_worker", "maybe_tick", "tick"]

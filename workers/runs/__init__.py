"""Runs of dependent tasks: submission, failure policy, pause/resume/cancel, locks.

A run's tasks are ordinary tasks with a ``run`` and a ``name``. Everything a run decides
(which of its tasks may be queued, what a failure does, when the run is over) is decided in
the short transactions that change the run or end one of its tasks, under the run's row
lock; the claim never looks at a run. A task the run holds back is WAITING.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Exists, OuterRef

from ..models import Run, Task
from . import gate, locks
from .control import active, affected, cancel, each, pause, resume
from .document import RunSpec, TaskEntry, parse
from .errors import InvalidRun, LockHeld, RunConflict, RunNotFound
from .reading import get, listing, report, summary
from .submit import create, submit


def settle_finished() -> list[int]:
    """End every run whose tasks are all finished but which is not yet marked so (its last
    tasks ended without a follow-up: see ``submit._followed``). One statement when none."""
    unfinished = Task.objects.filter(run=OuterRef("pk"), state__in=gate.UNFINISHED)
    ended = []
    for run_id in Run.objects.filter(finished_at__isnull=True).exclude(
            Exists(unfinished)).values_list("pk", flat=True):
        with transaction.atomic():
            run = gate.lock(run_id)
            gate.advance(run)
            if run.finished_at is not None:
                ended.append(run_id)
    return ended


def sweep() -> list[int]:
    """The monitor tick's share: end runs that are over, retry waiters for lock keys
    (woken after each release already; this catches a wake lost with its process). One
    statement a tick while no run is under way: every lock key belongs to a run."""
    if not Run.objects.filter(finished_at__isnull=True).exists():
        return []
    ended = settle_finished()
    locks.wake()
    return ended


__all__ = [
    "InvalidRun", "LockHeld", "RunConflict", "RunNotFound", "RunSpec", "TaskEntry", "active",
    "affected", "cancel", "create", "each", "get", "listing", "parse", "pause", "report",
    "resume", "settle_finished", "submit", "summary", "sweep",
]

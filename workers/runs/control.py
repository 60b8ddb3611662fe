"""An operator's hand on runs: start, pause, resume, cancel; one run or every active one.

Each is one short transaction under the run's row lock. Pausing takes the run's queued
tasks back to WAITING, so the claim (which never looks at runs) cannot take them; resuming
queues what is free again, within the run's cap. Running tasks finish on a pause and are
asked to stop on a cancel (after the commit, each in its own transaction).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from django.db import transaction

from ..models import Run
from ..models.run import ACTIVE_RUN_STATES, RunState
from ..queue import clock
from ..states import TaskState, move
from . import follow, gate, locks
from .errors import RunConflict

logger = logging.getLogger(__name__)

CANCELLED_BEFORE_RUNNING = "Cancelled with its run"


def _refuse_finished(run: Run, verb: str) -> None:
    if not run.is_active:
        raise RunConflict(f"run {run.pk} is {run.state}: only an active run can be {verb}")


def start(run: Run) -> int:
    """CREATED or PAUSED -> RUNNING (under the caller's lock); queue what is free."""
    run.state = RunState.RUNNING
    fields = ["state"]
    if run.started_at is None:
        run.started_at = clock.now()
        fields.append("started_at")
    run.save(update_fields=fields)
    return gate.promote(run)


def pause(run_id: int) -> Run:
    """Stop new claims of the run's tasks; running ones finish. Pausing twice is a no-op."""
    with transaction.atomic():
        run = gate.lock(run_id)
        _refuse_finished(run, "paused")
        if run.state == RunState.CREATED:
            raise RunConflict(f"run {run.pk} has not started: nothing to pause")
        if run.state != RunState.PAUSED:
            run.state = RunState.PAUSED
            run.save(update_fields=["state"])
            held = gate.hold(run)
            logger.info("run %s paused; %d queued tasks held", run.pk, held,
                        extra={"run": run.pk, "held": held})
    return run


def resume(run_id: int) -> Run:
    """Let the run's tasks be claimed again (starts a CREATED run). A no-op if running."""
    with transaction.atomic():
        run = gate.lock(run_id)
        _refuse_finished(run, "resumed")
        if run.state == RunState.CREATED and not locks.take_for_run(run, wait=True):
            raise RunConflict(f"run {run.pk} waits for its lock keys: "
                              f"{locks.waiting_for(run).get(None, '')}")
        if run.state != RunState.RUNNING:
            queued = start(run)
            logger.info("run %s resumed; %d tasks queued", run.pk, queued,
                        extra={"run": run.pk, "queued": queued})
    return run


def cancel(run_id: int, *, by: str = "") -> Run:
    """Cancel the run: its waiting and queued tasks at once, its running ones asked to stop."""
    with transaction.atomic():
        run = gate.lock(run_id)
        _refuse_finished(run, "cancelled")
        run.state = RunState.CANCELLED
        run.reason = f"Cancelled by {by}." if by else "Cancelled."
        run.save(update_fields=["state", "reason"])
        not_started = gate.tasks_of(run).filter(state__in=[TaskState.WAITING, TaskState.QUEUED])
        move(not_started, TaskState.CANCELLED, finished_at=clock.Now(),
             error=CANCELLED_BEFORE_RUNNING)
        running = list(gate.tasks_of(run).filter(state=TaskState.RUNNING)
                       .values_list("pk", flat=True))
        transaction.on_commit(functools.partial(follow.cancel_all, running), robust=True)
        gate.advance(run)
    return run


def retry_locks(run_id: int) -> bool:
    """Give a run waiting for keys another chance: start it, or queue its waiting tasks."""
    with transaction.atomic():
        run = gate.lock(run_id)
        if run.state == RunState.CREATED and run.wait_for_locks:
            if not locks.take_for_run(run, wait=True):
                return False
            run.reason = ""
            run.save(update_fields=["reason"])
            start(run)
            return True
        return gate.promote(run) > 0


def active() -> list[Run]:
    """Every run not yet over, oldest first: what ``--all`` acts on."""
    return list(Run.objects.filter(state__in=ACTIVE_RUN_STATES).order_by("id"))


def affected(verb: str) -> list[Run]:
    """The runs ``verb --all`` would change (pausing a paused run changes nothing)."""
    runs = active()
    if verb == "pause":
        return [run for run in runs if run.state == RunState.RUNNING]
    if verb == "resume":
        return [run for run in runs if run.state != RunState.RUNNING]
    return runs


def each(verb: str, act: Callable[[int], Run]) -> list[Run]:
    """Apply ``act`` to every run ``verb --all`` affects; one ended meanwhile is skipped."""
    done = []
    for run in affected(verb):
        try:
            done.append(act(run.pk))
        except RunConflict:
            logger.info("run %s ended before it could be %s", run.pk, verb)
    return done

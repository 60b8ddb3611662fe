"""What the end of a run's task does to its run: dependants, failure policy, cap, the end.

Called by :mod:`workers.queue.dependencies` inside the transaction that recorded the task's end,
after the task's own row (locked first), with the run's row locked next: every path takes
the locks in that order. Running tasks a halt cancels are asked to stop after the commit
(each in its own short transaction), so no transaction holds a run while waiting for a
task another worker is ending.
"""

from __future__ import annotations

import functools
import logging

from django.db import transaction

from ..models import Run, Task
from ..models.run import FailurePolicy, HaltRunning, RunState
from ..queue import dependencies
from ..states import TaskState
from . import gate

logger = logging.getLogger(__name__)


def succeeded(task_id: int, run_id: int) -> int:
    """Count the task off its dependants, queue what is free now; returns how many."""
    run = gate.lock(run_id)
    dependencies.count_off(task_id)
    return gate.advance(run)


def ended(task_id: int, run_id: int) -> int:
    """The task failed or was cancelled for good: apply the run's failure policy.

    Returns how many of the run's tasks were skipped.
    """
    run = gate.lock(run_id)
    task = Task.objects.only("pk", "name", "state", "error").get(pk=task_id)
    if task.state == TaskState.FAILED and run.failure_policy == FailurePolicy.HALT and (
            run.is_active):
        skipped = halt(run, task)
    else:
        skipped = skip_dependants(task)
    gate.advance(run)
    return skipped


def requeued(task_id: int, run_id: int) -> None:
    """A task of the run goes back to the queue for a retry: not while the run is paused
    (held, WAITING), nor once it halted or was cancelled (skipped)."""
    run = gate.lock(run_id)
    if run.state == RunState.RUNNING:
        return
    again = Task.objects.filter(pk=task_id, state=TaskState.QUEUED)
    if run.is_active:
        gate.hold(run, again)
        return
    gate.skip(again, f"not retried: the run is {run.state.lower()}")
    gate.advance(run)


def halt(run: Run, task: Task) -> int:
    """Fail the run: nothing of it starts any more; running tasks finish or are cancelled."""
    why = f"task {gate.label(task)} failed"
    run.state, run.reason = RunState.FAILED, f"Halted: {why}."
    run.save(update_fields=["state", "reason"])
    skipped = gate.skip(gate.tasks_of(run).filter(state__in=[TaskState.WAITING,
                                                              TaskState.QUEUED]),
                        f"the run halted after {why}")
    if run.halt_running == HaltRunning.CANCEL:
        running = list(gate.tasks_of(run).filter(state=TaskState.RUNNING)
                       .values_list("pk", flat=True))
        transaction.on_commit(functools.partial(cancel_all, running), robust=True)
    logger.warning("run %s halted: %s", run.pk, why, extra={"run": run.pk, "task": task.pk})
    return skipped


def cancel_all(task_ids: list[int]) -> None:
    """Ask each running task to stop (after the commit of the run's change)."""
    from .. import queue  # the queue imports dependencies, which imports this module

    for task_id in task_ids:
        queue.cancel(task_id)


def skip_dependants(task: Task) -> int:
    """Skip every task that waits, directly or not, on ``task``: level by level."""
    reason = f"task {gate.label(task)} upstream did not succeed"
    skipped, frontier = 0, [task.pk]
    while frontier:
        waiting = Task.objects.filter(dependencies__depends_on_id__in=frontier,
                                      state=TaskState.WAITING).order_by()
        frontier = list(waiting.values_list("pk", flat=True).distinct())
        skipped += gate.skip(Task.objects.filter(pk__in=frontier), reason)
    return skipped

"""What a run lets through: which of its tasks are queued now, and when the run is over.

Called under the run's row lock (:func:`lock`), in the transaction that changed the run or
ended one of its tasks. A task the run holds back (paused, over its cap) is WAITING with no
predecessor outstanding; promoting it is one UPDATE, whatever the run's size.
"""

from __future__ import annotations

import functools

from django.db import transaction
from django.db.models import Count, Exists, OuterRef

from ..models import LockKey, Run, Task, TaskQuerySet
from ..models.run import ACTIVE_RUN_STATES, RunState
from ..queue import clock, doorbell
from ..states import TaskState, move
from . import locks, workdir
from .errors import RunNotFound

SKIPPED = "Skipped: "
UNFINISHED = (TaskState.WAITING, TaskState.QUEUED, TaskState.RUNNING)
BUSY = (TaskState.QUEUED, TaskState.RUNNING)


def lock(run_id: int) -> Run:
    """The run, its row locked until the caller's transaction ends."""
    try:
        return Run.objects.select_for_update().get(pk=run_id)
    except Run.DoesNotExist:
        raise RunNotFound(f"no run with id {run_id}") from None


def tasks_of(run: Run) -> TaskQuerySet:
    return Task.objects.filter(run=run).order_by()


def ready(run: Run) -> TaskQuerySet:
    """Its tasks with every predecessor done, not yet queued (task_run_ready_idx)."""
    return tasks_of(run).filter(state=TaskState.WAITING, pending_dependencies=0)


def _ring(tasks: TaskQuerySet) -> None:
    doorbell.ring_on_commit(tasks.values_list("queue", flat=True).distinct())


def _slots(run: Run) -> int | None:
    """How many more of its tasks may be queued now (None: no cap)."""
    cap = run.cap
    if cap is None:
        return None
    return max(cap - tasks_of(run).filter(state__in=BUSY).count(), 0)


def _with_keys(run: Run, free: TaskQuerySet, slots: int | None) -> list[int]:
    """The ready tasks to queue, in order, taking the keys of those that lock some."""
    locking = Exists(LockKey.objects.filter(task=OuterRef("pk")))
    chosen: list[int] = []
    rows = free.order_by("-priority", "id").annotate(locking=locking).values_list(
        "pk", "locking")
    for task_id, wants_keys in rows.iterator():
        if slots is not None and len(chosen) >= slots:
            break
        if not wants_keys or locks.take_for_task(task_id, run.pk):
            chosen.append(task_id)
    return chosen


def promote(run: Run) -> int:
    """Queue the run's ready tasks, up to its cap, if it is running. Returns how many."""
    if run.state != RunState.RUNNING:
        return 0
    free = ready(run)
    slots = _slots(run)
    if slots == 0:
        return 0
    if run.task_locks:
        free = Task.objects.filter(pk__in=_with_keys(run, free, slots)).order_by()
    elif slots is not None:
        chosen = list(free.order_by("-priority", "id").values_list("pk", flat=True)[:slots])
        free = Task.objects.filter(pk__in=chosen).order_by()
    _ring(free)
    return move(free, TaskState.QUEUED)


def advance(run: Run) -> int:
    """After a change: release the keys of ended tasks, queue what is free, maybe end."""
    if run.task_locks or run.locks:
        locks.release_finished(run)
    queued = promote(run)
    if settle(run) and run.locks:
        locks.release_finished(run)  # the run's own keys, now that it has ended
    return queued


def hold(run: Run, tasks: TaskQuerySet | None = None) -> int:
    """Take the run's queued tasks back to WAITING (a pause): no worker claims them, and
    they hold no lock keys until queued again."""
    queued = (tasks if tasks is not None else tasks_of(run)).filter(state=TaskState.QUEUED)
    ids = list(queued.values_list("pk", flat=True))
    if run.task_locks:
        locks.release_tasks(ids)
    return move(Task.objects.filter(pk__in=ids), TaskState.WAITING)


def _outcome(run: Run) -> tuple[str, str]:
    """COMPLETED if every task succeeded, else FAILED and why (for a run still active)."""
    counts = {row["state"]: row["n"]
              for row in tasks_of(run).values("state").annotate(n=Count("pk"))}
    bad = {state: n for state, n in counts.items() if state != TaskState.SUCCEEDED and n}
    if not bad:
        return RunState.COMPLETED, ""
    parts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(bad.items()))
    total = sum(counts.values())
    return RunState.FAILED, f"{sum(bad.values())} of {total} tasks did not succeed ({parts})"


def settle(run: Run) -> bool:
    """If none of its tasks is left to finish, end the run; True if it ended now."""
    if run.finished_at is not None:
        return False
    if tasks_of(run).filter(state__in=UNFINISHED).exists():
        return False
    fields = ["finished_at"]
    if run.state in ACTIVE_RUN_STATES:
        run.state, reason = _outcome(run)
        run.reason = run.reason or reason
        fields += ["state", "reason"]
    run.finished_at = clock.now()
    run.save(update_fields=fields)
    if run.merge_outputs and run.state == RunState.COMPLETED:
        transaction.on_commit(functools.partial(workdir.merge, run.pk), robust=True)
    return True


def skip(tasks: TaskQuerySet, reason: str) -> int:
    """Cancel tasks that will never run, saying why."""
    return move(tasks, TaskState.CANCELLED, finished_at=clock.Now(), error=f"{SKIPPED}{reason}")


def label(task: Task) -> str:
    return f"{task.name!r} (task {task.pk})" if task.name else f"task {task.pk}"

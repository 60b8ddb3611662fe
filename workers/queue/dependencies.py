"""Tasks that wait for others: a count of unfinished predecessors per task.

A task with predecessors is WAITING until every one has succeeded; when one fails or is
cancelled for good, its dependents fail with a reason naming it (the "halt" policy).
Runs of dependent tasks build their policies on this.

The count is exact: each edge is counted off once (``satisfied``), in the transaction that
records the predecessor's success, however often that predecessor runs or is retried.
"""

from __future__ import annotations

from django.db.models import F

from ..exceptions import InvalidTaskSpec
from ..models import Task, TaskDependency
from ..states import TaskState, move
from . import doorbell
from .clock import Now

BROKEN = (TaskState.FAILED, TaskState.CANCELLED)


def check_predecessors(ids: list[int]) -> list[Task]:
    """Lock and return the predecessors; refuse unknown or already failed ones."""
    found = {task.pk: task for task in Task.objects.select_for_update().filter(pk__in=ids)}
    missing = sorted(set(ids) - set(found))
    if missing:
        raise InvalidTaskSpec("depends_on", f"no task with id {missing[0]}")
    for task in found.values():
        if task.state in BROKEN:
            raise InvalidTaskSpec("depends_on", f"task {task.pk} already {task.state.lower()}")
    return list(found.values())


def link(task: Task, predecessors: list[Task]) -> None:
    """Record the edges; one whose predecessor already succeeded is satisfied from the start."""
    TaskDependency.objects.bulk_create(
        TaskDependency(task=task, depends_on=before,
                       satisfied=before.state == TaskState.SUCCEEDED)
        for before in predecessors
    )
    Task.objects.filter(pk__in=[before.pk for before in predecessors]).update(has_dependents=True)


def unfinished(predecessors: list[Task]) -> int:
    return sum(1 for before in predecessors if before.state != TaskState.SUCCEEDED)


def _run_of(task_id: int) -> int | None:
    return Task.objects.filter(pk=task_id).values_list("run_id", flat=True).first()


def count_off(task_id: int) -> int:
    """``task_id`` succeeded: take one off each dependent's count, once per edge.

    Two statements whatever the fan-out (no list of ids travels). The caller's transaction
    holds the predecessor's row, so no other one counts the same edges meanwhile.
    """
    edges = TaskDependency.objects.filter(depends_on_id=task_id, satisfied=False)
    counted = Task.objects.filter(pk__in=edges.values("task_id")).update(
        pending_dependencies=F("pending_dependencies") - 1
    )
    edges.update(satisfied=True)
    return counted


def release(task_id: int) -> int:
    """``task_id`` succeeded: count it off its dependents once, queue those now free.

    Runs inside the transaction that recorded the success. Returns how many were queued.
    A run's task is followed up by its run (``workers.runs.follow``).
    """
    run_id = _run_of(task_id)
    if run_id is not None:
        from ..runs import follow  # runs build on this module

        return follow.succeeded(task_id, run_id)
    edges = TaskDependency.objects.filter(depends_on_id=task_id, satisfied=False)
    waiting = list(edges.values_list("task_id", flat=True))
    if not waiting or not edges.filter(task_id__in=waiting).update(satisfied=True):
        return 0
    Task.objects.filter(pk__in=waiting).update(
        pending_dependencies=F("pending_dependencies") - 1
    )
    ready = Task.objects.filter(pk__in=waiting, pending_dependencies=0, state=TaskState.WAITING)
    queues = list(ready.values_list("queue", flat=True))
    queued = move(ready, TaskState.QUEUED)
    doorbell.ring_on_commit(queues)
    return queued


def requeued(task_id: int) -> None:
    """A run's task was queued again for another attempt: its run may hold it back."""
    run_id = _run_of(task_id)
    if run_id is not None:
        from ..runs import follow

        follow.requeued(task_id, run_id)


def halt(task_id: int) -> int:
    """``task_id`` failed for good: fail its waiting dependents, and theirs, in turn.

    A run's task: its run's failure policy decides (``workers.runs.follow``).
    """
    run_id = _run_of(task_id)
    if run_id is not None:
        from ..runs import follow

        return follow.ended(task_id, run_id)
    failed, frontier = 0, [task_id]
    while frontier:
        upstream = frontier.pop()
        waiting = Task.objects.filter(dependencies__depends_on_id=upstream, state=TaskState.WAITING)
        ids = list(waiting.values_list("pk", flat=True))
        move(
            Task.objects.filter(pk__in=ids, state=TaskState.WAITING),
            TaskState.FAILED,
            finished_at=Now(),
            error=f"Not run: upstream task {upstream} did not succeed.",
        )
        failed += len(ids)
        frontier += ids
    return failed



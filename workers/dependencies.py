"""Tasks that wait for others: a count of unfinished predecessors per task.

A task with predecessors is WAITING until every one has succeeded; when one fails or is
cancelled for good, its dependents fail with a reason naming it (the "halt" policy).
Runs of dependent tasks build their policies on this.
"""

from __future__ import annotations

from django.db.models import F
from django.utils import timezone

from . import doorbell
from .exceptions import InvalidTaskSpec
from .models import Task, TaskDependency
from .states import TASK_TRANSITIONS, TaskState

BROKEN = (TaskState.FAILED, TaskState.CANCELLED)
assert TaskState.FAILED in TASK_TRANSITIONS[TaskState.WAITING]
assert TaskState.QUEUED in TASK_TRANSITIONS[TaskState.WAITING]


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
    TaskDependency.objects.bulk_create(
        TaskDependency(task=task, depends_on=before) for before in predecessors
    )
    Task.objects.filter(pk__in=[before.pk for before in predecessors]).update(has_dependents=True)


def unfinished(predecessors: list[Task]) -> int:
    return sum(1 for before in predecessors if before.state != TaskState.SUCCEEDED)


def release(task_id: int) -> None:
    """``task_id`` succeeded: count it off its dependents, queue those now free."""
    dependents = Task.objects.filter(dependencies__depends_on_id=task_id)
    dependents.update(pending_dependencies=F("pending_dependencies") - 1)
    ready = Task.objects.filter(
        dependencies__depends_on_id=task_id, pending_dependencies=0, state=TaskState.WAITING
    )
    queues = set(ready.values_list("queue", flat=True))
    if ready.update(state=TaskState.QUEUED):
        for name in queues:
            doorbell.ring_all(f"q:{name}")


def halt(task_id: int) -> int:
    """``task_id`` failed for good: fail its waiting dependents, and theirs, in turn."""
    failed, frontier = 0, [task_id]
    while frontier:
        upstream = frontier.pop()
        waiting = Task.objects.filter(dependencies__depends_on_id=upstream, state=TaskState.WAITING)
        ids = list(waiting.values_list("pk", flat=True))
        Task.objects.filter(pk__in=ids).update(
            state=TaskState.FAILED,
            finished_at=timezone.now(),
            error=f"Not run: upstream task {upstream} did not succeed.",
        )
        failed += len(ids)
        frontier += ids
    return failed

"""What an operator does through the API: call the engine, refuse what the state forbids, and
record every add, drain, abort, cancel and retry in the admin log."""

from __future__ import annotations

import logging

from django.contrib.auth.models import AnonymousUser, User

from .. import queue
from ..exceptions import AdmissionRefused, InvalidQueueName
from ..models import PausedQueue, Task, Worker
from ..pool import admission, launcher
from ..queue import pausing
from ..spec import TaskSpec
from ..states import TASK_TRANSITIONS, TaskState, sources
from ..web import audit, registry
from .errors import BadRequest, Conflict

logger = logging.getLogger(__name__)

Operator = User | AnonymousUser
CANCELLABLE = frozenset(sources(TASK_TRANSITIONS, TaskState.CANCELLED))


def _log(user: Operator, action: str, obj: Worker | Task | PausedQueue, *,
         forced: bool = False) -> None:
    audit.record(user, obj, action, forced=forced)
    logger.info("%s %s %s by %s%s", action, obj._meta.model_name, obj.pk, user,
                " (forced)" if forced else "",
                extra={"action": action, "object_id": obj.pk, "user": user.pk, "forced": forced})


def add_workers(user: Operator, count: int, *, force: bool) -> list[Worker]:
    """Start ``count`` workers; a refusal carries the admission figures the panel shows, and
    whether force would start them (never past WORKER_MAX_COUNT)."""
    try:
        added = launcher.add(count, force=force)
    except AdmissionRefused as exc:
        room = admission.check()
        raise Conflict(str(exc), {
            "reason": exc.reason,
            "forceable": exc.forceable,
            "limit": room.binding if exc.forceable else "max_count",
            "admissible": room.admissible,
            "active": room.active,
            "requested": count,
            "limits": room.limits,
        }) from exc
    for worker in added:
        _log(user, "add", worker, forced=force)
    return added


def _still_active(worker: Worker) -> Worker:
    if not worker.is_active:
        raise Conflict(f"worker {worker.pk} is already {worker.state}", {"state": worker.state})
    return worker


def drain_worker(user: Operator, worker_id: int | None) -> Worker:
    worker = _still_active(launcher.drain(worker_id))
    _log(user, "drain", worker)
    return worker


def undrain_worker(user: Operator, worker_id: int) -> Worker:
    worker = launcher.undrain(worker_id)
    _log(user, "undrain", worker)
    return worker


def abort_worker(user: Operator, worker_id: int) -> Worker:
    worker = _still_active(launcher.abort(worker_id))
    _log(user, "abort", worker)
    return worker


def cancel_task(user: Operator, task_id: int) -> Task:
    """Cancel a waiting or queued task now; ask the worker of a running one to stop it."""
    state = queue.get(task_id).state
    if state not in CANCELLABLE:
        raise Conflict(f"task {task_id} is {state}: only waiting, queued or running tasks can "
                       "be cancelled", {"state": state})
    task = queue.cancel(task_id)
    _log(user, "cancel", task)
    return task


def retry_task(user: Operator, task_id: int) -> Task:
    """Give a finished task a fresh budget of attempts."""
    before = queue.get(task_id)
    if not before.is_finished:
        raise Conflict(f"task {task_id} is {before.state}: only finished tasks can be retried",
                       {"state": before.state})
    task = queue.retry(task_id)
    _log(user, "retry", task)
    return task


def submit_task(spec: TaskSpec) -> Task:
    return registry.enqueue(spec)


def submit_tasks(specs: list[TaskSpec]) -> list[Task]:
    """Many tasks from an untrusted caller in one transaction: all, or none."""
    return registry.enqueue_many(specs)


def set_paused(user: Operator, name: str | None, paused: bool) -> pausing.QueueState:
    """Pause or resume the queue ``name``, logged; its state afterwards."""
    if not name:
        raise BadRequest("queue", "is required: the name of the queue")
    try:
        if paused:
            pausing.pause(name, by=str(user))
        else:
            pausing.resume(name)
    except InvalidQueueName as exc:
        raise BadRequest("queue", str(exc)) from exc
    _log(user, "pause" if paused else "resume", PausedQueue(name=name))
    return pausing.state_of(name)

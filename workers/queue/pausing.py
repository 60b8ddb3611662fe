"""Pause a queue: its tasks stay QUEUED and no worker claims them until it is resumed.

A paused queue is a row (``PausedQueue``), so the pause survives restarts and every
machine's workers see it in their next claim: the claim itself leaves paused queues out
(``claim._open_queues``). Resuming rings the queue's doorbell, so idle workers take its
tasks at once rather than at their next poll.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from django.db import transaction

from ..exceptions import InvalidQueueName
from ..models import PausedQueue, Task
from ..states import TaskState
from . import doorbell

MAX_NAME = Task._meta.get_field("queue").max_length or 100


def check_name(name: str) -> str:
    if not name or len(name) > MAX_NAME or "\x00" in name:
        raise InvalidQueueName(f"a queue name has 1 to {MAX_NAME} characters and no NUL byte")
    return name


def pause(name: str, by: str = "") -> bool:
    """Stop workers claiming from ``name``; False if it was paused already."""
    _, created = PausedQueue.objects.get_or_create(name=check_name(name),
                                                   defaults={"paused_by": by[:150]})
    return created


def resume(name: str) -> bool:
    """Let workers claim from ``name`` again; False if it was not paused."""
    with transaction.atomic():
        deleted, _ = PausedQueue.objects.filter(name=check_name(name)).delete()
        if deleted:
            transaction.on_commit(functools.partial(doorbell.ring_all, f"q:{name}"))
    return bool(deleted)


def paused() -> dict[str, PausedQueue]:
    """Every paused queue by name."""
    return {row.name: row for row in PausedQueue.objects.all()}


def is_paused(name: str) -> bool:
    return PausedQueue.objects.filter(name=name).exists()


@dataclass(frozen=True, slots=True)
class QueueState:
    """One queue as an operator lists it: paused or not, and its bounded counts."""

    name: str
    paused: PausedQueue | None
    queued: int
    scheduled: int
    running: int


def known() -> list[str]:
    """Queues with tasks still to finish, and paused ones (which may be empty)."""
    active = [TaskState.QUEUED, TaskState.WAITING, TaskState.RUNNING]
    names = set(Task.objects.filter(state__in=active).values_list("queue", flat=True).distinct())
    return sorted(names | set(PausedQueue.objects.values_list("name", flat=True)))


def state_of(name: str, row: PausedQueue | None = None, *, look: bool = True) -> QueueState:
    """One queue's pause and bounded counts (``look``: read its pause from the database)."""
    from ..web.tasklist import queue_summary

    if look:
        row = PausedQueue.objects.filter(name=name).first()
    summary = queue_summary(name, listed=0)  # the counts alone: no running task's row
    return QueueState(name, row, summary.queued, summary.scheduled, summary.running)


def overview() -> list[QueueState]:
    rows = paused()
    return [state_of(name, rows.get(name), look=False) for name in known()]

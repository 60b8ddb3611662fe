"""Lock keys: tasks (or runs) whose keys overlap never run at the same time.

A task with keys is queued only once it holds them all (taken when its run promotes it,
under the run's lock); until then it stays WAITING, its rows saying who holds what it
wants. It holds them until it ends for good, however it ends: success, failure, cancel, a
crash or a SIGKILLed worker (the reclaim that ends its attempt releases them). A retry
keeps them. A run's own keys are taken at submission, refused (naming the holder) or
waited for, and kept until its last task ended.

Keys overlap when equal, or when both are paths and one lies inside the other. Deciding
that needs every held key in view, so taking keys is serialised: a transaction-scoped
advisory lock on PostgreSQL; on SQLite every writing transaction is serialised anyway.
Released keys wake their waiters after the commit (each run in its own transaction, so no
transaction holds two runs); the monitor tick retries any waiter left behind.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable

from django.db import connection, transaction
from django.db.models import Q, QuerySet

from ..models import LockKey, Run, Task
from ..states import FINISHED_TASK_STATES
from .errors import LockHeld, RunNotFound

logger = logging.getLogger(__name__)

ADVISORY_KEY = 0x11C0C4  # this module's pg_advisory_xact_lock


def overlaps(one: str, other: str) -> bool:
    if one == other:
        return True
    if "/" not in one or "/" not in other:
        return False
    one_dir, other_dir = one.rstrip("/") + "/", other.rstrip("/") + "/"
    return one_dir.startswith(other_dir) or other_dir.startswith(one_dir)


def _serialise() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ADVISORY_KEY])


def holder(row: LockKey) -> str:
    if row.task_id is None:
        return f"run {row.run_id}"
    task = Task.objects.filter(pk=row.task_id).values_list("name", flat=True).first()
    return f"task {row.task_id} ({task!r} of run {row.run_id})"


def _conflict(wanted: Iterable[str], held: Iterable[LockKey], run_id: int,
              *, for_task: bool) -> tuple[str, LockKey] | None:
    """The first held key that overlaps a wanted one. A task may use its own run's keys."""
    for row in held:
        own_run = row.run_id == run_id
        if own_run and (row.task_id is None or not for_task):
            continue
        for key in wanted:
            if overlaps(key, row.key):
                return key, row
    return None


def request(run: Run, keys: Iterable[str], task_id: int | None = None) -> list[LockKey]:
    rows = [LockKey(run=run, task_id=task_id, key=key) for key in keys]
    return LockKey.objects.bulk_create(rows)


def take_for_task(task_id: int, run_id: int) -> bool:
    """Take every key of the task, or none (and note who holds what it waits for)."""
    _serialise()
    wanted = LockKey.objects.filter(task_id=task_id)
    held = LockKey.objects.filter(held=True).exclude(task_id=task_id)
    found = _conflict(list(wanted.values_list("key", flat=True)), held, run_id, for_task=True)
    if found is not None:
        key, row = found
        wanted.update(blocked_by=f"{key} held by {holder(row)}"[:300])
        return False
    wanted.update(held=True, blocked_by="")
    return True


def take_for_run(run: Run, *, wait: bool) -> bool:
    """Take the run's own keys. Held by another active run: refuse naming it, or wait."""
    wanted = LockKey.objects.filter(run=run, task__isnull=True)
    keys = list(wanted.values_list("key", flat=True))
    if not keys:
        return True
    _serialise()
    held = LockKey.objects.filter(held=True).exclude(run=run)
    found = _conflict(keys, held, run.pk, for_task=False)
    if found is None:
        wanted.update(held=True, blocked_by="")
        return True
    key, row = found
    message = f"lock {key!r} is held by {holder(row)}"
    if not wait:
        raise LockHeld(f"{message}; submit with wait_for_locks to wait for it",
                       {key: row.run_id})
    wanted.update(blocked_by=f"{key} held by {holder(row)}"[:300])
    return False


def release_finished(run: Run) -> list[str]:
    """Release the keys of the run's tasks that have ended (all of them once it has)."""
    rows = LockKey.objects.filter(run=run)
    if run.finished_at is None:
        rows = rows.filter(task__state__in=FINISHED_TASK_STATES)
    return _release(rows)


def release_tasks(task_ids: list[int]) -> list[str]:
    """Release the keys of tasks going back to WAITING (a pause): taken again when queued."""
    return _release(LockKey.objects.filter(task_id__in=task_ids))


def _release(rows: QuerySet[LockKey]) -> list[str]:
    keys = list(rows.filter(held=True).values_list("key", flat=True))
    ids = list(rows.filter(Q(held=True) | ~Q(blocked_by="")).values_list("pk", flat=True))
    if ids:
        LockKey.objects.filter(pk__in=ids).update(held=False, blocked_by="")
    if keys:
        transaction.on_commit(functools.partial(wake, keys), robust=True)
    return keys


def blocked_runs(keys: list[str] | None = None) -> set[int]:
    """Runs with a task (or their own keys) waiting for keys; only those overlapping
    ``keys`` if given."""
    waiting = LockKey.objects.filter(held=False).exclude(blocked_by="").values_list(
        "run_id", "key")
    return {run_id for run_id, key in waiting
            if keys is None or any(overlaps(key, released) for released in keys)}


def wake(keys: list[str] | None = None) -> list[int]:
    """Give released keys to their waiters: each waiting run in its own transaction."""
    from . import control  # control starts runs, and releasing is part of what it does

    woken = []
    for run_id in sorted(blocked_runs(keys)):
        try:
            if control.retry_locks(run_id):
                woken.append(run_id)
        except RunNotFound:  # deleted meanwhile
            continue
    return woken


def waiting_for(run: Run) -> dict[int | None, str]:
    """Who holds what each waiting task (None: the run itself) waits for."""
    rows = LockKey.objects.filter(run=run, held=False).exclude(blocked_by="")
    return {task_id: text for task_id, text in rows.values_list("task_id", "blocked_by")}

"""Writing a checked run: the run, its tasks in dependency order, their edges; then start it.

One transaction: a refusal anywhere (a lock held by another run) writes nothing. Tasks
are written WAITING with their count of predecessors; starting the run queues the free
ones in one UPDATE.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from .. import queue
from ..exceptions import InvalidTaskSpec
from ..models import LockKey, Run, Task, TaskDependency
from ..models.run import RunMode
from ..web import registry
from . import control, locks
from .document import Check, RunSpec, TaskEntry, parse
from .errors import InvalidRun

BATCH = 1000


def _followed(spec: RunSpec) -> set[str]:
    """Tasks whose end the run must follow at once: they have dependants, or the run
    caps its parallel tasks (a slot frees). Others' ends cost the run nothing; the monitor
    tick notices a run whose last such task ended (``workers.runs.settle_finished``)."""
    if spec.max_parallel is not None or spec.mode != RunMode.PARALLEL or spec.locks:
        return {entry.name for entry in spec.tasks}
    needed = {before for entry in spec.tasks for before in entry.depends_on}
    return needed | {entry.name for entry in spec.tasks if entry.locks}


def _memory(entry: TaskEntry, known: queue.MemoryByCall) -> dict[str, Any]:
    """Its estimate for the claim, CPUs and limit, as the queue stores them for any task;
    refused (naming the task) if no node could ever run it. Asked once per kind of call:
    a run of 10,000 calls of one function asks once."""
    try:
        return queue.memory_fields_once(entry.spec, known)
    except InvalidTaskSpec as exc:
        where = f"tasks[{entry.index}] ({entry.name}).{exc.field}"
        raise InvalidRun(where, exc.message) from exc


def _task(run: Run, entry: TaskEntry, followed: set[str], known: queue.MemoryByCall) -> Task:
    return Task(
        run=run,
        name=entry.name,
        state="WAITING",
        pending_dependencies=len(entry.depends_on),
        has_dependents=entry.name in followed,
        **queue.call_fields(entry.spec),
        **_memory(entry, known),
    )


def _write_tasks(run: Run, spec: RunSpec) -> dict[str, int]:
    followed = _followed(spec)
    known: queue.MemoryByCall = {}
    made = Task.objects.bulk_create([_task(run, entry, followed, known)
                                     for entry in spec.tasks], batch_size=BATCH)
    return {task.name: task.pk for task in made}


def _write_edges(spec: RunSpec, ids: dict[str, int]) -> None:
    TaskDependency.objects.bulk_create(
        (TaskDependency(task_id=ids[entry.name], depends_on_id=ids[before])
         for entry in spec.tasks for before in entry.depends_on),
        batch_size=BATCH,
    )


def _write_keys(run: Run, spec: RunSpec, ids: dict[str, int]) -> None:
    locks.request(run, spec.locks)
    LockKey.objects.bulk_create(
        (LockKey(run=run, task_id=ids[entry.name], key=key)
         for entry in spec.tasks for key in entry.locks),
        batch_size=BATCH,
    )


def create(spec: RunSpec, *, by: str = "") -> Run:
    """Write a checked run and (unless ``spec.start`` is False) start it.

    A run whose own lock keys another active run holds is refused (``LockHeld``), nothing
    written, unless ``wait_for_locks``: then it stays CREATED until they are free.
    """
    with transaction.atomic():
        run = Run.objects.create(
            name=spec.name, failure_policy=spec.failure_policy, halt_running=spec.halt_running,
            mode=spec.mode, max_parallel=spec.max_parallel, locks=list(spec.locks),
            task_locks=any(entry.locks for entry in spec.tasks),
            wait_for_locks=spec.wait_for_locks and spec.start, created_by=by[:150],
            merge_outputs=spec.merge_outputs,
        )
        ids = _write_tasks(run, spec)
        _write_edges(spec, ids)
        _write_keys(run, spec, ids)
        free = locks.take_for_run(run, wait=spec.wait_for_locks)
        if spec.start and free:
            control.start(run)
    return run


def submit(document: Any, *, by: str = "", name: str | None = None,
           trusted: bool = True) -> Run:
    """Check a run document and write it. ``trusted=False`` (the web): allow-listed task
    paths only, checked before anything is imported."""
    check: Check | None = None if trusted else registry.require
    return create(parse(document, check=check, name=name), by=by)

"""The queue: the only place that changes a task's state.

Every write for a running attempt is fenced by (worker id, attempt): a worker that lost its
attempt (lease expired, reclaimed, aborted) matches no row and is told to stop.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.db.models import (
    BooleanField,
    Case,
    DateTimeField,
    ExpressionWrapper,
    F,
    Field,
    Q,
    Value,
    When,
)
from django.db.models.functions import Coalesce, Greatest

from .. import conf, storable
from ..exceptions import InvalidTaskSpec, LostAttempt, TaskNotFound
from ..models import PausedQueue, Task, TaskAttempt, TaskQuerySet, Worker
from ..pool import budget, estimates, learning, memory_retry
from ..spec import Shape, TaskSpec, check_arguments, resolve, validate, validate_options
from ..states import TASK_TRANSITIONS, Outcome, TaskState, WorkerState, move, moves
from . import clock, dependencies, doorbell, holding, inserting
from . import hotpath as claim_module
from .clock import Now, later
from .holding import Holding
from .hotpath import (
    ClaimedTask,
    Empty,
    Handover,
    NextClaim,
    OneCommit,
    Recordable,
    any_due,
    claim,
    record_success,
    succeed_all_and_claim_sqlite,
    succeed_and_claim_pg,
    succeed_and_claim_sqlite,
)

logger = logging.getLogger(__name__)

CRASH_OUTCOMES = frozenset({Outcome.CRASHED, Outcome.WORKER_LOST})
BACKOFF_OUTCOMES = frozenset({Outcome.ERROR, Outcome.TIMED_OUT, Outcome.CRASHED})
TAIL_CHARS = 1000

PROGRESS_CHARS = 500

__all__ = ["ClaimedTask", "any_due", "claim_next", "enqueue", "enqueue_many", "enqueue_one",
           "memory_fields"]


def enqueue(spec: TaskSpec) -> Task:
    """Validate and store a task, then wake the workers of its queue."""
    texts = validate(spec)
    if not spec.depends_on:
        return _insert_queued(spec, texts).task()
    with transaction.atomic():
        predecessors = dependencies.check_predecessors(spec.depends_on)
        pending = dependencies.unfinished(predecessors)
        task = _create(spec, TaskState.WAITING if pending else TaskState.QUEUED, pending)
        dependencies.link(task, predecessors)
    return task


def enqueue_one(spec: TaskSpec) -> tuple[int, datetime]:
    """``enqueue``, for a caller that needs only the new task's id and the moment it was
    enqueued (Django's ``.enqueue()``): no Task is built for a task without predecessors."""
    if spec.depends_on:
        task = enqueue(spec)
        return task.pk, task.created_at
    written = _insert_queued(spec, validate(spec))
    return written.id, written.created_at


def enqueue_many(specs: Sequence[TaskSpec]) -> list[Task]:
    """Validate and store many tasks at once (a sweep's thousands of points): one
    transaction, few statements (``inserting.insert_many``), then one wake-up per queue.
    Each is checked as ``enqueue`` checks it (its estimate once per kind of call); one that
    is refused refuses them all, naming its index, and nothing is written. Tasks with
    ``depends_on`` belong in a run (``workers.runs``) or in ``enqueue``."""
    known: MemoryByCall = {}
    rows = [_queued_row(index, spec, known) for index, spec in enumerate(specs)]
    columns = {name: [row[name] for row in rows] for name in inserting.MANY}
    ids, created = _insert_many(columns, len(rows))
    return inserting.built(columns, ids, created, {"args": [spec.args for spec in specs],
                                                   "kwargs": [spec.kwargs for spec in specs]})


def enqueue_calls(template: TaskSpec, calls: Sequence[tuple[list[Any], dict[str, Any]]]
                  ) -> tuple[list[int], datetime]:
    """``enqueue_many`` of one function called many ways (a ``@task``'s ``enqueue_many``,
    ``manage.py enqueue --calls``): one task per ``(args, kwargs)`` of ``calls``, all else
    as ``template`` says (its own arguments are not used). The template is checked once,
    each call's arguments and estimate as ``enqueue`` checks them. Their ids in order, and
    the moment they were enqueued."""
    _validate_options(template)
    known: MemoryByCall = {}  # a call's estimate depends on its scale
    fitting: set[Shape] = set()  # whether a call binds depends on its shape only
    texts, memory = [], []
    for index, (args, kwargs) in enumerate(calls):
        try:
            texts.append(check_arguments(template.func_path, args, kwargs, fitting))
            memory.append(memory_fields_once(template, known, kwargs))
        except InvalidTaskSpec as exc:
            raise type(exc)(f"tasks[{index}].{exc.field}", exc.message) from exc
    count = len(texts)
    fixed = {"state": TaskState.QUEUED.value, "pending_dependencies": 0,
             **call_fields(template), "run_after": template.run_after}
    columns = {name: [value] * count for name, value in fixed.items()}
    columns["args"], columns["kwargs"] = [t[0] for t in texts], [t[1] for t in texts]
    for name in memory[0] if memory else ():
        columns[name] = ([memory[0][name]] * count if len(known) == 1
                         else [fields[name] for fields in memory])
    return _insert_many(columns, count)


def _insert_many(columns: dict[str, list[Any]], count: int) -> tuple[list[int], datetime]:
    with transaction.atomic():
        ids, created = inserting.insert_many(columns, count)
        doorbell.ring_on_commit(columns.get("queue", []))
    return ids, created


def _queued_row(index: int, spec: TaskSpec, known: MemoryByCall) -> dict[str, Any]:
    """What ``inserting.insert_many`` writes of a queued task without predecessors."""
    try:
        args, kwargs = _validate_independent(spec)
        memory = memory_fields_once(spec, known)
    except InvalidTaskSpec as exc:  # the same kind of refusal (CallMismatch stays one)
        raise type(exc)(f"tasks[{index}].{exc.field}", exc.message) from exc
    return {"state": TaskState.QUEUED.value, "pending_dependencies": 0, **call_fields(spec),
            "args": args, "kwargs": kwargs, **memory, "run_after": spec.run_after}


def _validate_independent(spec: TaskSpec) -> tuple[str, str]:
    texts = validate(spec)
    _refuse_dependencies(spec)
    return texts


def _validate_options(spec: TaskSpec) -> None:
    resolve(spec.func_path)
    validate_options(spec)
    _refuse_dependencies(spec)


def _refuse_dependencies(spec: TaskSpec) -> None:
    if spec.depends_on:
        raise InvalidTaskSpec("depends_on", "enqueue_many takes tasks without dependencies: "
                              "submit a run, or enqueue them one by one")


type MemoryByCall = dict[tuple[Any, ...], dict[str, Any]]


def memory_fields_once(spec: TaskSpec, known: MemoryByCall,
                       kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """``memory_fields``, asked once per kind of call (function, scale, what it declares):
    10,000 calls of one function ask once. ``kwargs``: the call's, in place of the spec's
    (``enqueue_calls``: one spec, many calls)."""
    called = spec.kwargs if kwargs is None else kwargs
    key = (spec.func_path, learning.scale_of(spec.func_path, called), spec.memory_mb,
           spec.memory_limit_mb, spec.cpus, spec.force)
    if key not in known:
        known[key] = memory_fields(spec if kwargs is None
                                   else dataclasses.replace(spec, kwargs=kwargs))
    return known[key]


def _estimate(spec: TaskSpec) -> estimates.Estimate:
    """The memory to reserve for ``spec``; refused if no node could ever give it (unless
    forced). A default estimate is the operator's setting, not the submitter's claim: a
    task that declares nothing is never refused for it."""
    found = estimates.estimate(spec.func_path, spec.kwargs, spec.memory_mb)
    if not spec.force and (found.source != estimates.DEFAULT or spec.cpus > 1):
        budget.check_fits(found.mb if found.source != estimates.DEFAULT else 0, spec.cpus,
                          found.describe())
    return found


def memory_fields(spec: TaskSpec) -> dict[str, Any]:
    """What a task row stores for scheduling by memory: its estimate (refused if no node
    could ever run it, unless forced), CPUs and memory limit. Every writer of new task rows
    (enqueue, runs) stores these, or the task is scheduled as needing nothing."""
    found = _estimate(spec)
    return {
        "memory_estimate_mb": found.mb,
        "memory_source": found.source,
        "memory_estimate_runs": found.runs,
        "memory_scale": found.scale,
        "memory_limit_mb": spec.memory_limit_mb,
        "cpus": spec.cpus,
    }


def queue_of(spec: TaskSpec) -> str:
    """The queue a task of ``spec`` joins: its own, else WORKER_QUEUE_NAME."""
    return spec.queue or conf.get().queue_name


def call_fields(spec: TaskSpec) -> dict[str, Any]:
    """What a task row stores of the call itself, with the settings' defaults filled in;
    every writer of new task rows (enqueue, runs) stores these and ``memory_fields``."""
    settings = conf.get()
    return {
        "func_path": spec.func_path,
        "args": spec.args,
        "kwargs": spec.kwargs,
        "queue": queue_of(spec),
        "priority": spec.priority,
        "max_attempts": spec.max_attempts or settings.max_attempts,
        "timeout": spec.timeout or settings.task_timeout,
        "memory_mb": spec.memory_mb,
        "retry_backoff": spec.retry_backoff,
    }


def _insert_queued(spec: TaskSpec, texts: tuple[str, str]) -> inserting.Written:
    """A task without predecessors: one statement (``inserting``), and the wake-up of its
    queue's workers at commit (on PostgreSQL the statement's own NOTIFY). A call that
    declares no memory, names no scale and takes one CPU (a plain ``@task``'s) is estimated
    by that statement too; one it refuses, or any other, is checked here first."""
    fields = {"state": TaskState.QUEUED.value, "pending_dependencies": 0, **call_fields(spec),
              "run_after": spec.run_after, "memory_limit_mb": spec.memory_limit_mb,
              "cpus": spec.cpus, "memory_scale": None}
    wake = f"q:{fields['queue']}"
    written = None
    if spec.memory_mb is None and spec.cpus == 1 and (
            learning.scale_of(spec.func_path, spec.kwargs) is None):
        written = inserting.insert_estimated(fields, texts, wake=wake, force=spec.force,
                                             default_mb=conf.get().memory_per_task_mb)
    if written is None:
        written = inserting.insert({**fields, **memory_fields(spec)}, texts, wake=wake)
    if connection.vendor != "postgresql":
        transaction.on_commit(functools.partial(doorbell.ring_local, wake))
    return written


def _create(spec: TaskSpec, state: str, pending: int) -> Task:
    task = Task.objects.create(
        state=state,
        pending_dependencies=pending,
        **call_fields(spec),
        **memory_fields(spec),
        run_after=spec.run_after,
    )
    if state == TaskState.QUEUED:
        transaction.on_commit(lambda: doorbell.ring_all(f"q:{task.queue}"))
    return task


def claim_next(worker_id: int, queues: list[str], *,
               look_first: bool = True) -> ClaimedTask | None:
    """Claim the best due task that fits this node, leased until the database's now +
    WORKER_LEASE_TTL. ``look_first``: see ``hotpath.claim`` (False when woken by an enqueue)."""
    return claim(worker_id, queues, conf.get().lease_ttl, budget.local_node(),
                 look_first=look_first)


def look_and_claim(worker_id: int, queues: list[str], *,
                   look_first: bool = True) -> ClaimedTask | Empty:
    """``claim_next``, saying why it found nothing (``hotpath.Empty``)."""
    return claim_module.look_and_claim(worker_id, queues, conf.get().lease_ttl,
                                       budget.local_node(), look_first=look_first)


def has_queued(queues: list[str]) -> bool:
    """Whether any task waits in ``queues`` (due or not) that a worker may claim: a batch
    worker's "nothing left". A paused queue's tasks wait for its resume, not for it."""
    open_queues = Task.objects.filter(queue__in=queues, state=TaskState.QUEUED)
    return open_queues.exclude(queue__in=PausedQueue.objects.values("name")).exists()


def release_unheld(worker_id: int, keep: Collection[int] = ()) -> list[int]:
    """Put back tasks the database says this worker holds but it never received.

    A claim whose reply was lost (the commit landed, the connection broke) leaves a task
    RUNNING under a worker that never heard of it. That attempt never began, so it is not
    counted: the task is queued again with its attempt number as before.
    """
    held = Task.objects.filter(worker_id=worker_id, state=TaskState.RUNNING)
    held = held.exclude(pk__in=list(keep))
    with transaction.atomic():
        ids = list(held.select_for_update().values_list("pk", flat=True))
        if ids:
            holding.put_back(ids)
    for task_id in ids:
        logger.warning("task %s: claim reply lost; queued again, attempt not counted", task_id)
    return ids


@dataclass(frozen=True, slots=True)
class Ending:
    """How an attempt ended, as the worker (or the monitor) saw it."""

    outcome: str
    error: str = ""
    traceback: str = ""
    peak_rss_bytes: int | None = None
    log_tail: str = ""
    exception_class: str = ""

    def storable(self) -> Ending:
        """The same ending with every text made storable (a task's data is untrusted)."""
        return dataclasses.replace(
            self,
            error=storable.text(self.error),
            traceback=storable.text(self.traceback),
            log_tail=storable.tail(self.log_tail, TAIL_CHARS),
            exception_class=storable.text(self.exception_class)[:255],
        )


def _fenced(token: ClaimedTask) -> TaskQuerySet:
    return Task.objects.filter(
        pk=token.id, worker_id=token.worker_id, attempt=token.attempt, state=TaskState.RUNNING
    )


def _peak(value: int | None) -> Any:
    if value is None:
        return F("peak_rss_bytes")
    return Greatest(Coalesce(F("peak_rss_bytes"), Value(0)), Value(value))


def _record_attempt(task: Task, started_at: datetime | None, ending: Ending,
                    finished_at: datetime) -> None:
    """Write one attempt's row; ``ending`` must already be storable."""
    worker_id = task.worker_id
    TaskAttempt.objects.create(
        task_id=task.pk,
        number=task.attempt,
        worker_id=worker_id,
        worker_label=f"worker {worker_id}" if worker_id else "",
        started_at=started_at,
        finished_at=finished_at,
        outcome=ending.outcome,
        error=ending.error,
        traceback=ending.traceback,
        exception_class=ending.exception_class,
        peak_rss_bytes=ending.peak_rss_bytes,
        log_tail=ending.log_tail,
        memory_estimate_mb=task.memory_estimate_mb or None,
        memory_limit_mb=task.memory_limit_mb or conf.get().memory_limit_mb or None,
    )


def renew(token: ClaimedTask) -> bool:
    """Extend the lease from the database's now; False means the attempt is not ours.

    A lease that has already run out is not renewed: the database, not the worker, says
    when it ended, and another worker may take the task from that moment on.
    """
    fenced = _fenced(token).filter(lease_expires_at__gte=Now())
    return fenced.update(lease_expires_at=later(conf.get().lease_ttl)) == 1


def attempt_status(token: ClaimedTask) -> tuple[bool, bool]:
    """Whether the attempt is still this worker's, and whether a cancel was asked for."""
    flags = _fenced(token).values_list("cancel_requested_at").first()
    return flags is not None, flags is not None and flags[0] is not None


def report_progress(token: ClaimedTask, fraction: float | None, message: str) -> bool:
    fields: dict[str, Any] = {"progress_message": storable.text(message[:PROGRESS_CHARS - 100])}
    if fraction is not None:
        fields["progress"] = min(max(fraction, 0.0), 1.0)
    return _fenced(token).update(**fields) == 1


def succeed(token: ClaimedTask, result: Any, ending: Ending) -> None:
    """Store the result of the attempt, unless it was lost meanwhile."""
    payload = _stored(token, result, ending)
    if payload is None:
        return
    with transaction.atomic():
        _succeed(token, payload, ending)


def succeed_and_claim(token: ClaimedTask, result: Any, ending: Ending,
                      queues: list[str]) -> ClaimedTask | None:
    """Store a result and claim the next task in one transaction: one commit per task."""
    payload = _stored(token, result, ending)
    if payload is None:
        return claim_next(token.worker_id, queues)
    one_commit = _one_commit_path()
    if one_commit is not None:
        recorded, claimed = one_commit(Handover(
            token,
            payload,
            peak=ending.peak_rss_bytes,
            log_tail=storable.tail(ending.log_tail, TAIL_CHARS),
            queues=queues,
            lease_ttl=conf.get().lease_ttl,
            node=budget.local_node(),
        ))
        if recorded:
            return claimed
        # Not ours any more, or others depend on it: the transactional path tells which.
    with transaction.atomic():
        _succeed(token, payload, ending)
        return claim_next(token.worker_id, queues)


type Done = tuple[ClaimedTask, Any, Ending]  # a success to record: its token, value, ending


def succeed_all_and_claim(done: Sequence[Done], queues: list[str],
                          holding: Holding | None = None) -> list[ClaimedTask]:
    """Store results and claim the next task in one transaction (SQLite: with the short
    tasks ``holding`` allows beside it, ``queue.holding``); what was claimed, in order."""
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        for token, result, ending in done[:-1]:
            _succeed_or_log(token, result, ending)
        last = succeed_and_claim(*done[-1], queues)
        return [] if last is None else [last]
    kept = [(token, ending, payload) for token, result, ending in done
            if (payload := _stored(token, result, ending)) is not None]
    records = [Recordable(token, payload, ending.peak_rss_bytes,
                          storable.tail(ending.log_tail, TAIL_CHARS))
               for token, ending, payload in kept]
    after = NextClaim(done[0][0].worker_id, queues, conf.get().lease_ttl, budget.local_node(),
                      holding)
    recorded, claimed = succeed_all_and_claim_sqlite(records, after)
    if all(recorded):
        return claimed
    for (token, ending, payload), written in zip(kept, recorded, strict=True):
        if not written:  # not ours any more, or others depend on it: the slow path tells
            _succeed_logged(token, payload, ending)
    following = claim_next(after.worker_id, queues)  # after the dependents it released
    return [] if following is None else [following]


def succeed_all(done: Sequence[Done]) -> None:
    """Store results, in one transaction; one no longer this worker's is logged and left."""
    with transaction.atomic():
        for token, result, ending in done:
            _succeed_or_log(token, result, ending)


def _succeed_or_log(token: ClaimedTask, result: Any, ending: Ending) -> None:
    payload = _stored(token, result, ending)
    if payload is not None:
        _succeed_logged(token, payload, ending)


def _succeed_logged(token: ClaimedTask, payload: str, ending: Ending) -> None:
    try:
        with transaction.atomic():
            _succeed(token, payload, ending)
    except LostAttempt as exc:
        logger.warning("result discarded: %s", exc)


def _one_commit_path() -> OneCommit | None:
    """This database's success-and-claim in one commit: one statement on PostgreSQL, one
    short IMMEDIATE transaction on SQLite (not inside a caller's transaction)."""
    if connection.vendor == "postgresql":
        return succeed_and_claim_pg
    if connection.vendor == "sqlite" and not connection.in_atomic_block:
        return succeed_and_claim_sqlite
    return None


def _stored(token: ClaimedTask, result: Any, ending: Ending) -> str | None:
    """The result's JSON text; None once the attempt has failed because it cannot be stored."""
    try:
        return storable.dumps(result)
    except storable.UnstorableResult as exc:
        error = str(exc)
    except (TypeError, ValueError) as exc:
        error = f"the task's result cannot be stored: it is not JSON-serialisable: {exc}"
    fail(token, Ending(Outcome.ERROR, error, peak_rss_bytes=ending.peak_rss_bytes,
                       log_tail=ending.log_tail,
                       exception_class="workers.storable.UnstorableResult"))
    return None


def _succeed(token: ClaimedTask, payload: str, ending: Ending) -> None:
    tail = storable.tail(ending.log_tail, TAIL_CHARS)
    recorded = record_success(token, payload, ending.peak_rss_bytes, tail)
    if recorded is None:
        raise LostAttempt(f"task {token.id} attempt {token.attempt} is no longer ours")
    if recorded.has_dependents:
        dependencies.release(token.id)


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential delay with equal jitter: each retry waits at least as long as the last."""
    delay = min(base * 2.0 ** max(attempt - 1, 0), cap)
    return delay / 2 + random.uniform(0, delay / 2)


@dataclass(frozen=True, slots=True)
class Verdict:
    state: str
    delay: float = 0.0
    quarantined: bool = False


def decide(task: Task, ending: Ending) -> Verdict:
    """What becomes of a task whose attempt ended without success."""
    settings = conf.get()
    crashes = task.crash_count + (1 if ending.outcome in CRASH_OUTCOMES else 0)
    if ending.outcome == Outcome.CANCELLED or task.cancel_requested_at is not None:
        return Verdict(TaskState.CANCELLED)
    if crashes >= settings.quarantine_after:
        return Verdict(TaskState.FAILED, quarantined=True)
    if task.attempt - task.attempt_base >= task.max_attempts:
        return Verdict(TaskState.FAILED)
    if ending.outcome not in BACKOFF_OUTCOMES:
        return Verdict(TaskState.QUEUED)
    base = task.retry_backoff if task.retry_backoff is not None else settings.retry_backoff
    return Verdict(TaskState.QUEUED, delay=backoff(task.attempt - task.attempt_base, base,
                                                   settings.retry_backoff_max))


def _end(task: Task, ending: Ending, started_at: datetime | None) -> Verdict:
    """Record a failed attempt of a locked, running task and move it on."""
    ending = ending.storable()
    verdict = decide(task, ending)
    now = clock.now()  # one moment of the database's clock for the whole ending
    fields: dict[str, Any] = {
        "lease_expires_at": None,
        "error": ending.error,
        "peak_rss_bytes": _peak(ending.peak_rss_bytes),
    }
    if ending.outcome in CRASH_OUTCOMES:
        fields["crash_count"] = F("crash_count") + 1
    if verdict.state == TaskState.QUEUED:
        fields["run_after"] = now + timedelta(seconds=verdict.delay) if verdict.delay else None
        # Back in the queue: no progress and no worker until an attempt claims it again
        # (who ran the last attempt stays in its attempt row).
        fields.update(progress=None, progress_message="", worker=None)
        if ending.outcome in memory_retry.MEMORY_OUTCOMES:
            fields.update(memory_retry.raised(task))  # ran out of memory: retried with more
    else:
        fields["finished_at"] = now
    if verdict.quarantined:
        fields["quarantined_at"] = now
        fields["error"] = (
            f"Quarantined: took its worker down {conf.get().quarantine_after} times. "
            f"Last: {ending.error}"
        )
    holder = Q(worker__isnull=True) if task.worker_id is None else Q(worker=task.worker_id)
    fenced = Task.objects.filter(holder, pk=task.pk, attempt=task.attempt,
                                 state=TaskState.RUNNING)
    if not move(fenced, verdict.state, **fields):
        raise LostAttempt(f"task {task.pk} attempt {task.attempt} is no longer running")
    _record_attempt(task, started_at, ending, now)
    if verdict.state != TaskState.QUEUED and (task.has_dependents or task.run_id is not None):
        dependencies.halt(task.pk)
    elif task.run_id is not None:
        dependencies.requeued(task.pk)  # a paused or ended run holds its retry back
    if verdict.state == TaskState.QUEUED and not verdict.delay:
        transaction.on_commit(lambda: doorbell.ring_all(f"q:{task.queue}"))
    return verdict


def fail(token: ClaimedTask, ending: Ending) -> str:
    """Record an attempt that did not succeed; retry, fail, cancel or quarantine the task."""
    return end_attempt(token, ending).state


def end_attempt(token: ClaimedTask, ending: Ending) -> Verdict:
    """Like :func:`fail`; the verdict says when a retry is due (``delay`` seconds)."""
    with transaction.atomic():
        task = _fenced(token).select_for_update().first()
        if task is None:
            raise LostAttempt(f"task {token.id} attempt {token.attempt} is no longer ours")
        return _end(task, ending, token.started_at)


def reclaim(task: Task, ending: Ending, *, expired_only: bool = False) -> str | None:
    """End a running attempt on behalf of a worker that cannot (gone, lease expired).

    The row is locked and its condition checked again: a renewal or an ending that landed
    after the caller looked wins, and nothing is reclaimed.
    """
    condition = Q(pk=task.pk, attempt=task.attempt, state=TaskState.RUNNING)
    if expired_only:
        condition &= Q(lease_expires_at__lt=Now())
    with transaction.atomic():
        current = Task.objects.select_for_update().filter(condition).first()
        if current is None:
            return None
        if current.held:
            return _release_lost(current)
        return _end(current, ending, current.last_attempted_at).state


def _release_lost(task: Task) -> str:
    """A lost worker held ``task`` beside another (``queue.holding``): nobody can tell
    whether it began. Queued again uncounted, and never held again: should it take its
    worker down, its next attempt, run alone, is counted."""
    holding.put_back([task.pk], run_alone=True)
    logger.warning("task %s: its worker was lost while holding it; queued again, attempt not"
                   " counted, and it will run alone", task.pk)
    return TaskState.QUEUED


def reclaim_worker(worker: Worker, outcome: str, reason: str) -> list[int]:
    """Put back (or fail) every task a lost worker was running (in the caller's transaction)."""
    reclaimed = []
    for task in Task.objects.running().filter(worker=worker):
        ending = Ending(outcome=outcome, error=reason, log_tail=worker.log_tail)
        if reclaim(task, ending) is not None:
            reclaimed.append(task.pk)
            logger.warning("reclaimed task %s from worker %s: %s", task.pk, worker.pk, reason)
    return reclaimed


ORPHANED = Q(worker__isnull=True) | Q(worker__state__in=[WorkerState.DEAD, WorkerState.FAILED])


def reclaim_expired_leases(live_here: Collection[int] = ()) -> list[int]:
    """Reclaim running tasks whose lease ended by the database's clock, and tasks whose
    worker row ended (or went) without them: one query finds both.

    ``live_here``: workers of this node whose processes are alive and not stopped. Their
    late tasks are left alone: such a worker stops a task it could not renew in time
    itself, and records how it ended once it can reach the database again. A failure to
    reclaim one task is logged and the others go on.
    """
    candidates = Task.objects.running().filter(ORPHANED | Q(lease_expires_at__lt=Now()))
    rows = candidates.annotate(
        orphan=ExpressionWrapper(ORPHANED, output_field=BooleanField())
    ).values_list("pk", "attempt", "worker_id", "orphan")
    reclaimed = []
    for task_id, attempt, worker_id, orphan in rows:
        if not orphan and worker_id in live_here:
            continue
        task = Task(pk=task_id, attempt=attempt, worker_id=worker_id)
        try:
            if _reclaim_late(task, orphan=orphan):
                reclaimed.append(task_id)
        except DatabaseError:
            logger.exception("could not reclaim task %s; moving on", task_id)
    return reclaimed


def _reclaim_late(task: Task, *, orphan: bool) -> bool:
    if orphan:
        ending = Ending(Outcome.WORKER_LOST, "its worker ended without it")
        return reclaim(task, ending) is not None
    ending = Ending(Outcome.LEASE_EXPIRED, "lease expired: no renewal in time")
    return reclaim(task, ending, expired_only=True) is not None


def get(task_id: int) -> Task:
    try:
        return Task.objects.get(pk=task_id)
    except Task.DoesNotExist:
        raise TaskNotFound(f"no task with id {task_id}") from None


STOP_NOW = (TaskState.WAITING, TaskState.QUEUED)
moves(TASK_TRANSITIONS, *((state, TaskState.CANCELLED) for state in STOP_NOW))


def _unless_running(value: Any, name: str) -> Case:
    """``value`` for a task that has not started, the column unchanged for a running one."""
    field = Task._meta.get_field(name)
    assert isinstance(field, Field)
    return Case(When(state__in=STOP_NOW, then=value), default=F(name), output_field=field)


def cancel(task_id: int) -> Task:
    """Cancel a waiting or queued task at once; ask the worker of a running one to stop it.

    One statement decides, under the row's lock: an attempt that ends meanwhile cannot
    slip between a "still queued?" and a "then running?".
    """
    with transaction.atomic():
        Task.objects.filter(
            pk=task_id, state__in=[*STOP_NOW, TaskState.RUNNING]
        ).update(
            state=_unless_running(Value(TaskState.CANCELLED.value), "state"),
            finished_at=_unless_running(Now(), "finished_at"),
            error=_unless_running(Value("Cancelled before it ran"), "error"),
            cancel_requested_at=Case(
                When(state=TaskState.RUNNING, then=Now()), default=F("cancel_requested_at"),
                output_field=DateTimeField(),
            ),
        )
        task = get(task_id)
        if task.state == TaskState.CANCELLED and (task.has_dependents or task.run_id is not None):
            dependencies.halt(task_id)
        worker = task.worker if task.state == TaskState.RUNNING else None
        if worker is not None:
            transaction.on_commit(lambda: wake(worker))
    return task


def retry(task_id: int) -> Task:
    """Give a finished task a fresh budget of attempts (releases a quarantine)."""
    task = get(task_id)
    finished = Task.objects.filter(pk=task_id).finished()
    target = TaskState.WAITING if task.pending_dependencies else TaskState.QUEUED
    found = estimates.estimate(task.func_path, task.kwargs, task.memory_mb,  # learned since
                               scale=task.memory_scale)
    moved = move(
        finished,
        target,
        memory_estimate_mb=found.mb,
        memory_source=found.source,
        memory_estimate_runs=found.runs,
        memory_scale=found.scale,
        attempt_base=F("attempt"),
        crash_count=0,
        quarantined_at=None,
        cancel_requested_at=None,
        finished_at=None,
        run_after=None,
        error="",
        result=None,
        progress=None,
        progress_message="",
    )
    if moved:
        transaction.on_commit(lambda: doorbell.ring_all(f"q:{task.queue}"))
    return get(task_id)


def wake(worker: Worker) -> None:
    """Ask one worker to look at its control flags now."""
    message = f"w:{worker.pk}"
    doorbell.ring(worker.doorbell, message)
    if worker.node and connection.vendor == "postgresql":
        doorbell.notify(message)

"""Short tasks held together (SQLite): what a busy worker claims beside its next task.

One commit a task caps SQLite's drain of short tasks (bench/README.md, session 15), so a
busy worker whose last run of a function was short (under WORKER_SHORT_TASK_MS, and printed
nothing) claims, in the transaction that records its successes, the next task and the
tasks that follow it in claim order while they are of that function, need no more memory
and CPUs than it, have no dependents, may be attempted more than once, and were never held
by a worker that was lost: WORKER_SHORT_TASKS_PER_CLAIM in all at most, and never more
than wait behind them, so that another worker claiming finds as many. The worker runs them
one after the other and records their successes together, with its next claim
(``runtime.bundle``).

A held task is RUNNING under its worker, fenced by its own attempt like any other, but
its row does not know it began (``held``): it holds no share of the node (the task run
before it does, until they are written together) and it keeps the claim's lease (the
worker cuts the bundle short, writing what is done, once a task of it runs long). Its
attempt counts only once it begins: a worker that stops, or whose executor dies, queues
again the held tasks that never began, uncounted. When the worker itself is lost, the
database cannot tell which held task had begun: each is queued again uncounted and marked
``run_alone``, never held again, so a task that kills its worker is counted from then on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import F, Q, Subquery, Value
from django.db.models.functions import Coalesce

from ..models import Node, Task, TaskQuerySet
from ..states import TaskState, move
from . import doorbell
from .hotpath import COLUMNS, QUEUED, RUNNING, ClaimedTask, NextClaim, _due, _limit_params, qmark

type Row = tuple[Any, ...]
type Hold = Callable[[Any, Row], list[Row]]  # (SQLite cursor, the claimed row) -> held rows


@dataclass(frozen=True, slots=True)
class Holding:
    """What a claim may hold beside the task it claims: at most ``more`` tasks of a
    function in ``short``."""

    short: frozenset[str]
    more: int


@functools.cache
def _look_sql(queue_count: int) -> str:
    """The due tasks after the claimed one, in claim order, and whether each may be held
    beside it (its function, estimate and CPUs: three ``%s``)."""
    table = connection.ops.quote_name(Task._meta.db_table)
    due, limit = _due("sqlite", queue_count)
    fits = ("t.func_path = %s AND t.memory_estimate_mb <= %s AND t.cpus <= %s"
            " AND NOT t.has_dependents AND NOT t.run_alone AND t.max_attempts > 1")
    return qmark(f"SELECT t.id, {fits} FROM {table} AS t WHERE {due}"
                 f" ORDER BY t.priority DESC, t.id ASC LIMIT {limit} * %s")


@functools.cache
def _hold_sql(count: int) -> str:
    table = connection.ops.quote_name(Task._meta.db_table)
    ids = ", ".join(["%s"] * count)
    return qmark(
        f"UPDATE {table} SET state = '{RUNNING}', worker_id = %s, attempt = attempt + 1,"
        " node_id = NULL, held = TRUE, lease_expires_at = %s, progress = NULL,"
        " progress_message = '', cancel_requested_at = NULL"
        # "+state": found by their ids; SQLite would walk every queued row of the state index
        f" WHERE id IN ({ids}) AND +state = '{QUEUED}' RETURNING {COLUMNS}"
    )


def _nothing(cursor: Any, head: Row) -> list[Row]:
    return []


def plan(after: NextClaim, worker_id: int, now: datetime,
         adapt: Callable[[datetime], Any]) -> Hold:
    """What to hold beside the claimed row, inside the claim's transaction (its parameters
    made before the write lock is taken)."""
    holding = after.holding
    if holding is None or holding.more < 1 or not holding.short:
        return _nothing
    queues = after.queues
    look_sql = _look_sql(len(queues))
    due = [*queues, adapt(now), *_limit_params(queues), 2 * holding.more]
    lease_end = adapt(now + timedelta(seconds=after.lease_ttl))

    def hold(cursor: Any, head: Row) -> list[Row]:
        func_path, estimate, cpus = head[2], head[13] or 0, head[14]
        if func_path not in holding.short:
            return []
        ids = held_ids(cursor.execute(look_sql, [func_path, estimate, cpus, *due]).fetchall())
        if not ids:
            return []
        rows: list[Row] = cursor.execute(_hold_sql(len(ids)), [worker_id, lease_end, *ids]
                                         ).fetchall()
        return sorted(rows, key=lambda row: (-row[9], row[0]))  # claim order

    return hold


def held_ids(looked: list[Row]) -> list[int]:
    """The ids to hold: the first rows that may be held, no more than are left behind them."""
    first = 0
    for _, fits in looked:
        if not fits:
            break
        first += 1
    return [row[0] for row in looked[:min(first, len(looked) // 2)]]


def _fenced_held(tokens: Sequence[ClaimedTask]) -> TaskQuerySet:
    which = Q(pk__in=[])
    for token in tokens:
        which |= Q(pk=token.id, attempt=token.attempt, worker_id=token.worker_id)
    return Task.objects.filter(which, state=TaskState.RUNNING, held=True)


def put_back(ids: Sequence[int], **fields: Any) -> None:
    """Queue running tasks ``ids`` again as if never claimed (a claim whose reply was lost,
    a held task that never began or whose worker was lost): the attempt their claim counted
    is taken back. In the caller's transaction; workers are woken once it commits."""
    move(Task.objects.filter(pk__in=ids, state=TaskState.RUNNING), TaskState.QUEUED,
         attempt=F("attempt") - 1, worker=None, lease_expires_at=None, held=False, node=None,
         **fields)
    doorbell.ring_on_commit(Task.objects.filter(pk__in=ids).values_list("queue", flat=True))


def release(tokens: Sequence[ClaimedTask]) -> list[int]:
    """Queue again held tasks that never began, their attempts uncounted; the ids put back
    (a task taken from this worker meanwhile is left alone)."""
    if not tokens:
        return []
    with transaction.atomic():
        ids = list(_fenced_held(tokens).select_for_update().values_list("pk", flat=True))
        if ids:
            put_back(ids)
    return ids


def begin(token: ClaimedTask, node: str) -> bool:
    """A held task runs long: its row now says it began, and it holds its share of the
    node (``node``: its name) like any running task. False: it is not this worker's."""
    node_id = Node.objects.filter(name=node).values("pk")[:1]
    return _fenced_held([token]).update(
        held=False, node_id=Subquery(node_id), last_attempted_at=token.started_at,
        started_at=Coalesce(F("started_at"), Value(token.started_at)),
    ) == 1

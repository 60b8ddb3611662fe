"""The hot path in plain SQL: the claim, and the write of a success.

The claim is one short statement that hands the best queued task to a worker.

Highest priority first, FIFO within a priority, only due tasks of the worker's queues.
PostgreSQL skips rows other workers hold (FOR UPDATE SKIP LOCKED); SQLite serialises
writers (IMMEDIATE transactions), so a conditional UPDATE ... RETURNING is enough.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from . import conf
from .clock import parse, sql_later, sql_now
from .models import PausedQueue, Task, TaskAttempt
from .states import TASK_TRANSITIONS, TaskState, moves

QUEUED, RUNNING, SUCCEEDED = (
    TaskState.QUEUED.value, TaskState.RUNNING.value, TaskState.SUCCEEDED.value
)
# The raw statements below make these moves; refuse them here if the state machine does not.
moves(TASK_TRANSITIONS, (QUEUED, RUNNING), (RUNNING, SUCCEEDED))

COLUMNS = "id, attempt, func_path, args, kwargs, timeout, max_attempts, memory_mb"
PG_COLUMNS = f"{COLUMNS}, last_attempted_at"


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    """A task now held by one worker for one attempt; (worker_id, attempt) fences its writes."""

    id: int
    attempt: int
    worker_id: int
    func_path: str
    args: list[Any]
    kwargs: dict[str, Any]
    timeout: float
    max_attempts: int
    memory_mb: int | None
    started_at: datetime  # by the database's clock


def _clock(vendor: str) -> tuple[str, str]:
    """The database's now, and now plus the lease (one ``%s``), in the hot path's SQL.

    On SQLite the database's clock is this process's: SQLite reads the clock in the
    process that runs the statement. There the moments are bound as parameters (the same
    clock), which keeps the write lock, and so every other worker, waiting less.
    """
    if vendor == "postgresql":
        return sql_now(vendor), sql_later(vendor)
    return "%s", "%s"


def _open_queues(queue_count: int) -> tuple[str, str]:
    """The claim's test of the worker's queues and its LIMIT, leaving paused queues out.

    With one queue (the common case) the pause is asked once, in the LIMIT, before any
    row is read: a paused queue of a million tasks costs one lookup, and an open one is
    walked through the claim index as before. With several queues each candidate row is
    asked (its queue's name is a primary-key lookup).
    """
    paused = connection.ops.quote_name(PausedQueue._meta.db_table)
    if queue_count == 1:
        limit = f"(CASE WHEN EXISTS (SELECT 1 FROM {paused} WHERE name = %s) THEN 0 ELSE 1 END)"
        return "queue = %s", limit
    placeholders = ", ".join(["%s"] * queue_count)
    each_open = f"NOT EXISTS (SELECT 1 FROM {paused} WHERE name = queue)"
    return f"queue IN ({placeholders}) AND {each_open}", "1"


def _limit_params(queues: list[str]) -> list[str]:
    return queues[:1] if len(queues) == 1 else []


@functools.cache
def _sql(vendor: str, queue_count: int) -> str:
    table = connection.ops.quote_name(Task._meta.db_table)
    open_queues, limit = _open_queues(queue_count)
    now, lease_end = _clock(vendor)
    # The subquery's row is still QUEUED when the UPDATE runs: PostgreSQL holds its row
    # lock, SQLite holds the database's write lock. Repeating the state test in the outer
    # WHERE made PostgreSQL scan every queued row through the state index.
    lock = " FOR UPDATE SKIP LOCKED" if vendor == "postgresql" else ""
    columns = PG_COLUMNS if vendor == "postgresql" else COLUMNS
    return (
        f"UPDATE {table} SET state = '{RUNNING}', worker_id = %s, attempt = attempt + 1,"
        f" lease_expires_at = {lease_end}, last_attempted_at = {now},"
        f" started_at = COALESCE(started_at, {now}),"
        " progress = NULL, progress_message = '', cancel_requested_at = NULL"
        f" WHERE id = (SELECT id FROM {table} WHERE state = '{QUEUED}'"
        f" AND {open_queues} AND (run_after IS NULL OR run_after <= {now})"
        f" ORDER BY priority DESC, id ASC LIMIT {limit}{lock})"
        f" RETURNING {columns}"
    )


def _claim_params(db: BaseDatabaseWrapper, worker_id: int, queues: list[str],
                  lease_ttl: float, now: datetime) -> list[Any]:
    if db.vendor == "postgresql":
        return [worker_id, lease_ttl, *queues, *_limit_params(queues)]
    adapt = db.ops.adapt_datetimefield_value
    at = adapt(now)
    return [worker_id, adapt(now + timedelta(seconds=lease_ttl)), at, at, *queues, at,
            *_limit_params(queues)]


@contextmanager
def _cursor(db: BaseDatabaseWrapper) -> Iterator[CursorWrapper]:
    """A cursor for the hot path's few fixed statements.

    On PostgreSQL they are prepared on the server: Django binds parameters on the client
    and re-plans every statement, which was half of PostgreSQL's work per task. Only these
    statements are prepared, so the rest of Django keeps its defaults.
    WORKER_PREPARED_STATEMENTS=false turns this off (PgBouncer before 1.21 in transaction
    pooling mode cannot keep prepared statements).
    """
    if db.vendor != "postgresql" or not conf.get().prepared_statements:
        with db.cursor() as cursor:
            yield cursor
        return
    from .prepared import prepared_cursor

    with prepared_cursor(db) as cursor:
        yield cursor


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _claimed(row: tuple[Any, ...], worker_id: int, now: datetime) -> ClaimedTask:
    task_id, attempt, func_path, args, kwargs, timeout, max_attempts, memory_mb, *rest = row
    started = rest[0] if rest else now
    return ClaimedTask(
        id=task_id,
        attempt=attempt,
        worker_id=worker_id,
        func_path=func_path,
        args=_loads(args),
        kwargs=_loads(kwargs),
        timeout=timeout,
        max_attempts=max_attempts,
        memory_mb=memory_mb,
        started_at=parse(started),
    )


def _db() -> BaseDatabaseWrapper:
    """The connection behind Django's thread-local proxy: looked up once per call, since
    each attribute read through the proxy costs a context-local lookup."""
    return connections[DEFAULT_DB_ALIAS]


def claim(worker_id: int, queues: list[str], lease_ttl: float) -> ClaimedTask | None:
    """Hand the best due task of ``queues`` to the worker, leased until the database's
    now + ``lease_ttl``."""
    db = _db()
    now = datetime.now(UTC)  # used on SQLite only, whose clock this is
    with _cursor(db) as cursor:
        cursor.execute(_sql(db.vendor, len(queues)),
                       _claim_params(db, worker_id, queues, lease_ttl, now))
        row = cursor.fetchone()
    return None if row is None else _claimed(row, worker_id, now)


@functools.cache
def _success_sql(vendor: str, *, without_dependents: bool = False) -> str:
    task_table = connection.ops.quote_name(Task._meta.db_table)
    result = "CAST(%s AS jsonb)" if vendor == "postgresql" else "%s"
    only = " AND NOT has_dependents" if without_dependents else ""
    now, _ = _clock(vendor)
    finished = ", finished_at" if vendor == "postgresql" else ""
    return (
        f"UPDATE {task_table} SET state = '{SUCCEEDED}', result = {result},"
        f" finished_at = {now}, lease_expires_at = NULL, progress = 1.0,"
        " peak_rss_bytes = CASE WHEN peak_rss_bytes IS NULL OR peak_rss_bytes < %s"
        " THEN %s ELSE peak_rss_bytes END"
        f" WHERE id = %s AND worker_id = %s AND attempt = %s AND state = '{RUNNING}'{only}"
        f" RETURNING has_dependents{finished}"
    )


ATTEMPT_COLUMNS = (
    "task_id, number, worker_id, worker_label, started_at, finished_at, outcome, error,"
    " exception_class, traceback, peak_rss_bytes, log_tail"
)


@functools.cache
def _attempt_sql() -> str:
    attempt_table = connection.ops.quote_name(TaskAttempt._meta.db_table)
    return (
        f"INSERT INTO {attempt_table} ({ATTEMPT_COLUMNS})"
        f" VALUES (%s, %s, %s, %s, %s, %s, '{SUCCEEDED}', '', '', '', %s, %s)"
    )


@dataclass(frozen=True, slots=True)
class Recorded:
    """A success written: whether other tasks wait on this one (to be released)."""

    has_dependents: bool


def record_success(token: ClaimedTask, payload: str, peak: int | None,
                   log_tail: str) -> Recorded | None:
    """The success write: one fenced UPDATE and the attempt's row, in the caller's transaction.

    None means the attempt was no longer this worker's. ``has_dependents`` is read under
    the row's lock, so a dependent linked while this task ran is never missed.
    """
    db = _db()
    adapt = db.ops.adapt_datetimefield_value
    now = datetime.now(UTC)  # used on SQLite only, whose clock this is
    params = _success_params(token, payload, peak)
    if db.vendor != "postgresql":
        params.insert(1, adapt(now))
    with _cursor(db) as cursor:
        cursor.execute(_success_sql(db.vendor), params)
        row = cursor.fetchone()
        if row is None:
            return None
        has_dependents, finished = row if len(row) == 2 else (row[0], now)
        cursor.execute(_attempt_sql(), _attempt_params(token, finished, peak, log_tail, adapt))
    return Recorded(has_dependents=bool(has_dependents))


type Adapt = Callable[[datetime | None], Any]  # the backend's adapt_datetimefield_value


def _success_params(token: ClaimedTask, payload: str, peak: int | None) -> list[Any]:
    """``payload``: the result's JSON text, already made storable (``storable.dumps``)."""
    return [payload, peak, peak, token.id, token.worker_id, token.attempt]


def _attempt_params(token: ClaimedTask, finished: Any, peak: int | None,
                    log_tail: str, adapt: Adapt) -> list[Any]:
    if isinstance(finished, datetime):
        finished = adapt(finished)
    return [token.id, token.attempt, token.worker_id, f"worker {token.worker_id}",
            adapt(token.started_at), finished, peak, log_tail]


@functools.cache
def _succeed_and_claim_sql(queue_count: int) -> str:
    attempt_table = connection.ops.quote_name(TaskAttempt._meta.db_table)
    claim_sql = _sql("postgresql", queue_count).replace(
        " ORDER BY", " AND EXISTS (SELECT 1 FROM done) ORDER BY", 1
    )
    return (
        f"WITH done AS ({_success_sql('postgresql', without_dependents=True)}),"
        f" logged AS (INSERT INTO {attempt_table} ({ATTEMPT_COLUMNS})"
        f" SELECT %s, %s, %s, %s, %s, finished_at, '{SUCCEEDED}', '', '', '', %s, %s FROM done"
        " RETURNING task_id),"
        f" next AS ({claim_sql})"
        f" SELECT (SELECT count(*) FROM logged), {PG_COLUMNS} FROM (SELECT 1) AS one"
        " LEFT JOIN next ON true"
    )


def succeed_and_claim_pg(
    token: ClaimedTask,
    payload: str,
    *,
    peak: int | None,
    log_tail: str,
    queues: list[str],
    lease_ttl: float,
) -> tuple[bool, ClaimedTask | None]:
    """PostgreSQL: record a success and claim the next task in one statement.

    Data-modifying CTEs all run, referenced or not, in one implicit transaction: a busy
    worker needs one round trip and one commit per task. A task others depend on is not
    recorded here (False, and nothing claimed): its dependents are released in the same
    transaction as its success, by the caller's slower path.
    """
    db = _db()
    adapt = db.ops.adapt_datetimefield_value
    params = [
        *_success_params(token, payload, peak),
        token.id, token.attempt, token.worker_id, f"worker {token.worker_id}",
        adapt(token.started_at), peak, log_tail,
        token.worker_id, lease_ttl, *queues, *_limit_params(queues),
    ]
    with _cursor(db) as cursor:
        cursor.execute(_succeed_and_claim_sql(len(queues)), params)
        row = cursor.fetchone()
    assert row is not None
    recorded = row[0] == 1
    if row[1] is None:
        return recorded, None
    return recorded, _claimed(row[1:], token.worker_id, token.started_at)

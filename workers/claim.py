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
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from . import conf
from .models import Task, TaskAttempt

COLUMNS = "id, attempt, func_path, args, kwargs, timeout, max_attempts, memory_mb, has_dependents"


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
    started_at: datetime
    has_dependents: bool = False


@functools.cache
def _sql(vendor: str, queue_count: int) -> str:
    table = connection.ops.quote_name(Task._meta.db_table)
    placeholders = ", ".join(["%s"] * queue_count)
    # The subquery's row is still QUEUED when the UPDATE runs: PostgreSQL holds its row
    # lock, SQLite holds the database's write lock. Repeating the state test in the outer
    # WHERE made PostgreSQL scan every queued row through the state index.
    lock = " FOR UPDATE SKIP LOCKED" if vendor == "postgresql" else ""
    return (
        f"UPDATE {table} SET state = 'RUNNING', worker_id = %s, attempt = attempt + 1,"
        " lease_expires_at = %s, last_attempted_at = %s, started_at = COALESCE(started_at, %s),"
        " progress = NULL, progress_message = '', cancel_requested_at = NULL"
        f" WHERE id = (SELECT id FROM {table} WHERE state = 'QUEUED'"
        f" AND queue IN ({placeholders}) AND (run_after IS NULL OR run_after <= %s)"
        f" ORDER BY priority DESC, id ASC LIMIT 1{lock})"
        f" RETURNING {COLUMNS}"
    )


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
    task_id, attempt, func_path, args, kwargs, timeout, max_attempts, memory_mb, dependents = row
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
        started_at=now,
        has_dependents=bool(dependents),
    )


def _db() -> BaseDatabaseWrapper:
    """The connection behind Django's thread-local proxy: looked up once per call, since
    each attribute read through the proxy costs a context-local lookup."""
    return connections[DEFAULT_DB_ALIAS]


def claim(
    worker_id: int, queues: list[str], now: datetime, lease_until: datetime
) -> ClaimedTask | None:
    db = _db()
    adapt = db.ops.adapt_datetimefield_value
    params: list[Any] = [worker_id, adapt(lease_until), adapt(now), adapt(now), *queues, adapt(now)]
    with _cursor(db) as cursor:
        cursor.execute(_sql(db.vendor, len(queues)), params)
        row = cursor.fetchone()
    return None if row is None else _claimed(row, worker_id, now)


@functools.cache
def _success_sql(vendor: str) -> str:
    task_table = connection.ops.quote_name(Task._meta.db_table)
    result = "CAST(%s AS jsonb)" if vendor == "postgresql" else "%s"
    return (
        f"UPDATE {task_table} SET state = 'SUCCEEDED', result = {result},"
        " finished_at = %s, lease_expires_at = NULL, progress = 1.0,"
        " peak_rss_bytes = CASE WHEN peak_rss_bytes IS NULL OR peak_rss_bytes < %s"
        " THEN %s ELSE peak_rss_bytes END"
        " WHERE id = %s AND worker_id = %s AND attempt = %s AND state = 'RUNNING'"
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
        " VALUES (%s, %s, %s, %s, %s, %s, 'SUCCEEDED', '', '', '', %s, %s)"
    )


def record_success(token: ClaimedTask, result: Any, finished: datetime, peak: int | None,
                   log_tail: str) -> bool:
    """The success write: one fenced UPDATE and the attempt's row, in the caller's transaction.

    False means the attempt was no longer this worker's.
    """
    db = _db()
    adapt = db.ops.adapt_datetimefield_value
    with _cursor(db) as cursor:
        cursor.execute(_success_sql(db.vendor), _success_params(token, result, finished, peak,
                                                               adapt))
        if cursor.rowcount != 1:
            return False
        cursor.execute(_attempt_sql(), _attempt_params(token, finished, peak, log_tail, adapt))
    return True


type Adapt = Callable[[datetime | None], Any]  # the backend's adapt_datetimefield_value


def _success_params(token: ClaimedTask, result: Any, finished: datetime,
                    peak: int | None, adapt: Adapt) -> list[Any]:
    return [json.dumps(result), adapt(finished), peak, peak, token.id, token.worker_id,
            token.attempt]


def _attempt_params(token: ClaimedTask, finished: datetime, peak: int | None,
                    log_tail: str, adapt: Adapt) -> list[Any]:
    return [token.id, token.attempt, token.worker_id, f"worker {token.worker_id}",
            adapt(token.started_at), adapt(finished), peak, log_tail]


@functools.cache
def _succeed_and_claim_sql(queue_count: int) -> str:
    attempt_table = connection.ops.quote_name(TaskAttempt._meta.db_table)
    return (
        f"WITH done AS ({_success_sql('postgresql')} RETURNING id),"
        f" logged AS (INSERT INTO {attempt_table} ({ATTEMPT_COLUMNS})"
        " SELECT %s, %s, %s, %s, %s, %s, 'SUCCEEDED', '', '', '', %s, %s FROM done"
        " RETURNING task_id),"
        f" next AS ({_sql('postgresql', queue_count)})"
        f" SELECT (SELECT count(*) FROM logged), {COLUMNS} FROM (SELECT 1) AS one"
        " LEFT JOIN next ON true"
    )


def succeed_and_claim_pg(
    token: ClaimedTask,
    result: Any,
    *,
    finished: datetime,
    peak: int | None,
    log_tail: str,
    queues: list[str],
    lease_until: datetime,
) -> tuple[bool, ClaimedTask | None]:
    """PostgreSQL: record a success and claim the next task in one statement.

    Data-modifying CTEs all run, referenced or not, in one implicit transaction: a busy
    worker needs one round trip and one commit per task.
    """
    db = _db()
    adapt = db.ops.adapt_datetimefield_value
    params = [
        *_success_params(token, result, finished, peak, adapt),
        *_attempt_params(token, finished, peak, log_tail, adapt),
        token.worker_id, adapt(lease_until), adapt(finished), adapt(finished), *queues,
        adapt(finished),
    ]
    with _cursor(db) as cursor:
        cursor.execute(_succeed_and_claim_sql(len(queues)), params)
        row = cursor.fetchone()
    assert row is not None
    recorded = row[0] == 1
    if row[1] is None:
        return recorded, None
    return recorded, _claimed(row[1:], token.worker_id, finished)

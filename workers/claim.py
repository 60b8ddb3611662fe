"""The hot path in plain SQL: the claim, and the write of a success.

The claim is one short statement that hands the best queued task to a worker.

Highest priority first, FIFO within a priority, only due tasks of the worker's queues.
PostgreSQL skips rows other workers hold (FOR UPDATE SKIP LOCKED); SQLite serialises
writers (IMMEDIATE transactions), so a conditional UPDATE ... RETURNING is enough.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
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


def _sql(queue_count: int) -> str:
    table = connection.ops.quote_name(Task._meta.db_table)
    placeholders = ", ".join(["%s"] * queue_count)
    # The subquery's row is still QUEUED when the UPDATE runs: PostgreSQL holds its row
    # lock, SQLite holds the database's write lock. Repeating the state test in the outer
    # WHERE made PostgreSQL scan every queued row through the state index.
    lock = " FOR UPDATE SKIP LOCKED" if connection.vendor == "postgresql" else ""
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
def _cursor() -> Iterator[CursorWrapper]:
    """A cursor for the hot path's few fixed statements.

    On PostgreSQL they are prepared on the server: Django binds parameters on the client
    and re-plans every statement, which was half of PostgreSQL's work per task. Only these
    statements are prepared, so the rest of Django keeps its defaults.
    WORKER_PREPARED_STATEMENTS=false turns this off (PgBouncer before 1.21 in transaction
    pooling mode cannot keep prepared statements).
    """
    if connection.vendor != "postgresql" or not conf.get().prepared_statements:
        with connection.cursor() as cursor:
            yield cursor
        return
    from .prepared import prepared_cursor

    with prepared_cursor(connection) as cursor:
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


def claim(
    worker_id: int, queues: list[str], now: datetime, lease_until: datetime
) -> ClaimedTask | None:
    adapt = connection.ops.adapt_datetimefield_value
    params: list[Any] = [worker_id, adapt(lease_until), adapt(now), adapt(now), *queues, adapt(now)]
    with _cursor() as cursor:
        cursor.execute(_sql(len(queues)), params)
        row = cursor.fetchone()
    return None if row is None else _claimed(row, worker_id, now)


def _json_param(value: Any) -> str:
    return "CAST(%s AS jsonb)" if connection.vendor == "postgresql" else "%s"


def record_success(token: ClaimedTask, result: Any, finished: datetime, peak: int | None,
                   log_tail: str) -> bool:
    """The success write: one fenced UPDATE and the attempt's row, in the caller's transaction.

    False means the attempt was no longer this worker's.
    """
    attempt_table = connection.ops.quote_name(TaskAttempt._meta.db_table)
    with _cursor() as cursor:
        cursor.execute(_success_sql(result), _success_params(token, result, finished, peak))
        if cursor.rowcount != 1:
            return False
        cursor.execute(
            f"INSERT INTO {attempt_table} ({ATTEMPT_COLUMNS})"
            " VALUES (%s, %s, %s, %s, %s, %s, 'SUCCEEDED', '', '', '', %s, %s)",
            _attempt_params(token, finished, peak, log_tail),
        )
    return True


def _success_sql(result: Any) -> str:
    task_table = connection.ops.quote_name(Task._meta.db_table)
    return (
        f"UPDATE {task_table} SET state = 'SUCCEEDED', result = {_json_param(result)},"
        " finished_at = %s, lease_expires_at = NULL, progress = 1.0,"
        " peak_rss_bytes = CASE WHEN peak_rss_bytes IS NULL OR peak_rss_bytes < %s"
        " THEN %s ELSE peak_rss_bytes END"
        " WHERE id = %s AND worker_id = %s AND attempt = %s AND state = 'RUNNING'"
    )


def _success_params(token: ClaimedTask, result: Any, finished: datetime,
                    peak: int | None) -> list[Any]:
    adapt = connection.ops.adapt_datetimefield_value
    return [json.dumps(result), adapt(finished), peak, peak, token.id, token.worker_id,
            token.attempt]


ATTEMPT_COLUMNS = (
    "task_id, number, worker_id, worker_label, started_at, finished_at, outcome, error,"
    " exception_class, traceback, peak_rss_bytes, log_tail"
)


def _attempt_params(token: ClaimedTask, finished: datetime, peak: int | None,
                    log_tail: str) -> list[Any]:
    adapt = connection.ops.adapt_datetimefield_value
    return [token.id, token.attempt, token.worker_id, f"worker {token.worker_id}",
            adapt(token.started_at), adapt(finished), peak, log_tail]


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
    adapt = connection.ops.adapt_datetimefield_value
    attempt_table = connection.ops.quote_name(TaskAttempt._meta.db_table)
    sql = (
        f"WITH done AS ({_success_sql(result)} RETURNING id),"
        f" logged AS (INSERT INTO {attempt_table} ({ATTEMPT_COLUMNS})"
        " SELECT %s, %s, %s, %s, %s, %s, 'SUCCEEDED', '', '', '', %s, %s FROM done"
        " RETURNING task_id),"
        f" next AS ({_sql(len(queues))})"
        f" SELECT (SELECT count(*) FROM logged), {COLUMNS} FROM (SELECT 1) AS one"
        " LEFT JOIN next ON true"
    )
    params = [
        *_success_params(token, result, finished, peak),
        *_attempt_params(token, finished, peak, log_tail),
        token.worker_id, adapt(lease_until), adapt(finished), adapt(finished), *queues,
        adapt(finished),
    ]
    with _cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    assert row is not None
    recorded = row[0] == 1
    if row[1] is None:
        return recorded, None
    return recorded, _claimed(row[1:], token.worker_id, finished)

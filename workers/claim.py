"""The hot path in plain SQL: the claim, and the write of a success.

The claim is one short statement that hands the best queued task to a worker.

Highest priority first, FIFO within a priority, only due tasks of the worker's queues.
PostgreSQL skips rows other workers hold (FOR UPDATE SKIP LOCKED); SQLite serialises
writers (IMMEDIATE transactions), so a conditional UPDATE ... RETURNING is enough.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection

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
    lock = " FOR UPDATE SKIP LOCKED" if connection.vendor == "postgresql" else ""
    return (
        f"UPDATE {table} SET state = 'RUNNING', worker_id = %s, attempt = attempt + 1,"
        " lease_expires_at = %s, last_attempted_at = %s, started_at = COALESCE(started_at, %s),"
        " progress = NULL, progress_message = '', cancel_requested_at = NULL"
        f" WHERE id = (SELECT id FROM {table} WHERE state = 'QUEUED'"
        f" AND queue IN ({placeholders}) AND (run_after IS NULL OR run_after <= %s)"
        f" ORDER BY priority DESC, id ASC LIMIT 1{lock})"
        f" AND state = 'QUEUED' RETURNING {COLUMNS}"
    )


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def claim(worker_id: int, queues: list[str], now: datetime, lease_until: datetime) -> ClaimedTask | None:
    adapt = connection.ops.adapt_datetimefield_value
    params: list[Any] = [worker_id, adapt(lease_until), adapt(now), adapt(now), *queues, adapt(now)]
    with connection.cursor() as cursor:
        cursor.execute(_sql(len(queues)), params)
        row = cursor.fetchone()
    if row is None:
        return None
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


def _json_param(value: Any) -> str:
    return "CAST(%s AS jsonb)" if connection.vendor == "postgresql" else "%s"


def record_success(token: ClaimedTask, result: Any, finished: datetime, peak: int | None,
                   log_tail: str) -> bool:
    """The success write of the hot path: one fenced UPDATE and the attempt's row.

    Runs inside the caller's transaction; False means the attempt was no longer ours.
    """
    adapt = connection.ops.adapt_datetimefield_value
    task_table = connection.ops.quote_name(Task._meta.db_table)
    attempt_table = connection.ops.quote_name(TaskAttempt._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {task_table} SET state = 'SUCCEEDED', result = {_json_param(result)},"
            " finished_at = %s, lease_expires_at = NULL, progress = 1.0,"
            " peak_rss_bytes = CASE WHEN peak_rss_bytes IS NULL OR peak_rss_bytes < %s"
            " THEN %s ELSE peak_rss_bytes END"
            " WHERE id = %s AND worker_id = %s AND attempt = %s AND state = 'RUNNING'",
            [json.dumps(result), adapt(finished), peak, peak, token.id, token.worker_id,
             token.attempt],
        )
        if cursor.rowcount != 1:
            return False
        cursor.execute(
            f"INSERT INTO {attempt_table} (task_id, number, worker_id, worker_label, started_at,"
            " finished_at, outcome, error, exception_class, traceback, peak_rss_bytes, log_tail)"
            " VALUES (%s, %s, %s, %s, %s, %s, 'SUCCEEDED', '', '', '', %s, %s)",
            [token.id, token.attempt, token.worker_id, f"worker {token.worker_id}",
             adapt(token.started_at), adapt(finished), peak, log_tail],
        )
    return True

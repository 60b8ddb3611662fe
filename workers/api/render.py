"""The JSON shapes of the API: tasks, attempts, pages, workers, tick reports.

Memory is in bytes and times are ISO 8601 in UTC, as in the status document.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.http import HttpRequest

from ..models import Task, TaskAttempt, Worker
from ..pool.monitor import TickReport
from ..queue.pausing import QueueState
from ..web import status
from ..web.status import iso
from .errors import NotFound
from .queries import Cursor, TaskHistory, TaskPage


def task_summary(task: Task) -> dict[str, Any]:
    """What the list shows of a task (no arguments or result)."""
    return {
        "id": task.pk,
        "func_path": task.func_path,
        "state": task.state,
        "queue": task.queue,
        "priority": task.priority,
        "attempt": task.attempt,
        "attempt_base": task.attempt_base,
        "max_attempts": task.max_attempts,
        "worker_id": task.worker_id,
        "created_at": iso(task.created_at),
        "run_after": iso(task.run_after),
        "started_at": iso(task.started_at),
        "last_attempted_at": iso(task.last_attempted_at),
        "finished_at": iso(task.finished_at),
        "cancel_requested_at": iso(task.cancel_requested_at),
        "quarantined_at": iso(task.quarantined_at),
        "pending_dependencies": task.pending_dependencies,
        "progress": task.progress,
        "progress_message": task.progress_message,
        "error": task.error,
    }


def attempt_json(attempt: TaskAttempt) -> dict[str, Any]:
    return {
        "number": attempt.number,
        "worker_id": attempt.worker_id,
        "worker_label": attempt.worker_label,
        "started_at": iso(attempt.started_at),
        "finished_at": iso(attempt.finished_at),
        "outcome": attempt.outcome,
        "error": attempt.error,
        "exception_class": attempt.exception_class,
        "traceback": attempt.traceback,
        "peak_rss_bytes": attempt.peak_rss_bytes,
        "log_tail": attempt.log_tail,
    }


def task_detail(history: TaskHistory) -> dict[str, Any]:
    """Everything about one task: its call, its limits, its result and every attempt."""
    task = history.task
    return {
        **task_summary(task),
        "args": task.args,
        "kwargs": task.kwargs,
        "result": task.result,
        "timeout": task.timeout,
        "memory_mb": task.memory_mb,
        "memory_estimate_mb": task.memory_estimate_mb,
        "memory_source": task.memory_source,
        "cpus": task.cpus,
        "memory_limit_mb": task.memory_limit_mb,
        "retry_backoff": task.retry_backoff,
        "lease_expires_at": iso(task.lease_expires_at),
        "crash_count": task.crash_count,
        "peak_rss_bytes": task.peak_rss_bytes,
        "depends_on": history.depends_on,
        "attempts": [attempt_json(attempt) for attempt in history.attempts],
    }


def _page_url(request: HttpRequest, cursor: Cursor | None) -> str | None:
    """This list with the same filters at another cursor (None: there is nothing there)."""
    if cursor is None:
        return None
    query = request.GET.copy()
    for name in ("after", "before"):
        query.pop(name, None)
    for name, task_id in cursor.items():
        query[name] = str(task_id)
    return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


def task_page(request: HttpRequest, page: TaskPage) -> dict[str, Any]:
    return {
        "results": [task_summary(task) for task in page.tasks],
        "page_size": page.page_size,
        "next": _page_url(request, page.next),
        "previous": _page_url(request, page.previous),
    }


def workers(rows: list[Worker]) -> list[dict[str, Any]]:
    """The status document's shape of these workers, from one fresh snapshot."""
    views = {view.id: view for view in status.snapshot().workers}
    missing = [row.pk for row in rows if row.pk not in views]
    if missing:
        # A snapshot shows every active worker and the latest ended ones, so a worker just
        # acted upon is always in it; this only guards against a pruned row.
        raise NotFound(f"worker {missing[0]} is gone")
    return [status.worker_json(views[row.pk]) for row in rows]


def worker(row: Worker) -> dict[str, Any]:
    return workers([row])[0]


def added(rows: list[Worker]) -> dict[str, Any]:
    """The first new worker, with every worker started (more than one when count > 1)."""
    shown = workers(rows)
    return {**shown[0], "workers": shown}


def tick(report: TickReport) -> dict[str, Any]:
    return dataclasses.asdict(report)


def queue_state(row: QueueState) -> dict[str, Any]:
    paused = row.paused
    return {
        "name": row.name,
        "paused": paused is not None,
        "paused_at": iso(paused.paused_at) if paused else None,
        "paused_by": paused.paused_by if paused else None,
        "queued": row.queued,
        "scheduled": row.scheduled,
        "running": row.running,
    }

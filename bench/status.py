"""Server time of the status JSON and the panel fragment with 64 workers and 1,000,000 tasks.

    .venv/bin/python bench/status.py --db sqlite|postgres [--tasks 1000000] [--requests 30]

Fills a throwaway database with a million task rows (mostly finished, some queued,
waiting, failed in the last hour), 64 running workers each with a task and 30 heartbeat
samples, then times the two views in-process (no network) and counts their queries.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.core import _django, database, emit

WORKERS = 64
SAMPLES = 30

# state by row number: 0.5% queued, 0.1% waiting, 0.1% failed (last hour), the rest done
STATE = (
    "CASE WHEN x %% 200 = 0 THEN 'QUEUED' WHEN x %% 1000 = 1 THEN 'WAITING'"
    " WHEN x %% 1000 = 2 THEN 'FAILED' ELSE 'SUCCEEDED' END"
)
COLUMNS = (
    "func_path, args, kwargs, queue, priority, state, max_attempts, attempt, attempt_base,"
    " timeout, created_at, finished_at, progress_message, error, crash_count,"
    " pending_dependencies, has_dependents"
)


def _values(now: str) -> str:
    return (
        f"'bench.tasks.noop', '[]', '{{}}', CASE WHEN x %% 3 = 0 THEN 'big' ELSE 'default' END,"
        f" x %% 7, {STATE}, 3, 1, 0, 60.0, {now}, {now}, '', '', 0, 0, false"
    )


def fill_tasks(count: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"INSERT INTO workers_task ({COLUMNS}) SELECT {_values('now()')}"
                " FROM generate_series(1, %s) AS x",
                [count],
            )
            cursor.execute("VACUUM ANALYZE")  # what autovacuum does to a table this size
        else:
            now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
            cursor.execute(
                "WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq"
                f" WHERE x < %s) INSERT INTO workers_task ({COLUMNS})"
                f" SELECT {_values(now).replace('false', '0')} FROM seq",
                [count],
            )
            cursor.execute("ANALYZE")


def fill_workers() -> None:
    from datetime import timedelta

    from django.utils import timezone

    from workers.models import Heartbeat, Task, Worker

    now = timezone.now()
    workers = Worker.objects.bulk_create(
        Worker(state="RUNNING", node=f"node-{i % 4}", pid=4_000_000 + i, queues=["default"],
               started_at=now, last_heartbeat=now, rss_bytes=80 * 2**20, cpu_percent=50.0)
        for i in range(WORKERS)
    )
    queued = list(Task.objects.filter(state="QUEUED").values_list("pk", flat=True)[:WORKERS])
    for worker, task_id in zip(workers, queued, strict=True):
        Task.objects.filter(pk=task_id).update(
            state="RUNNING", worker=worker, last_attempted_at=now, progress=0.4,
            progress_message="step 40 of 100",
        )
    Heartbeat.objects.bulk_create(
        Heartbeat(worker=worker, at=now - timedelta(seconds=30 * n), rss_bytes=2**26 + n,
                  cpu_percent=40.0)
        for worker in workers
        for n in range(SAMPLES)
    )


def time_view(path: str, requests: int, headers: dict[str, str]) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    user = get_user_model().objects.filter(username="bench").first()
    if user is None:
        user = get_user_model().objects.create_superuser("bench", "b@localhost", "bench")
    client = Client()
    client.force_login(user)
    client.get(path, headers=headers)  # warm caches, as a panel that refreshes would
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    with CaptureQueriesContext(connection) as queries:
        client.get(path, headers=headers)
    times.sort()
    return {
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[int(len(times) * 0.95) - 1], 1),
        "queries": len(queries),
    }


def run(kind: str, tasks: int, requests: int) -> dict[str, Any]:
    with database(kind) as (url, workdir):
        os.environ["ALLOWED_HOSTS"] = "testserver,127.0.0.1,localhost"
        _django(url, workdir)

        started = time.perf_counter()
        fill_tasks(tasks)
        fill_workers()
        filled = time.perf_counter() - started
        return {
            "database": kind,
            "tasks": tasks,
            "workers": WORKERS,
            "fill_seconds": round(filled, 1),
            "status_json": time_view("/api/workers/status/", requests, {}),
            "fragment": time_view("/htmx/workers/status/", requests, {"HX-Request": "true"}),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], required=True)
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    emit(run(args.db, args.tasks, args.requests), args.json)


if __name__ == "__main__":
    main()

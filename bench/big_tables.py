"""Server time of the task lists, the panel and pruning with 10,000,000 task rows.

    .venv/bin/python bench/big_tables.py --db sqlite|postgres [--tasks 10000000] [--runs 9]
        [--keep] [--reuse] [--json out.json]

Builds a database of its own (the SQLite file ``<tmp>/crucible_bench_big.sqlite3``, or the
PostgreSQL database ``crucible_bench_big``; a trial with another ``--tasks`` gets a name
with its size; never the test database): the task table
filled in SQL in batches of a million rows with its indexes dropped and rebuilt after,
then ANALYZE (and VACUUM on PostgreSQL, as autovacuum would). ``--keep`` leaves it for a
later ``--reuse`` run. Then it times, in this process through Django's test Client (the
whole middleware stack, no network), the admin task list with each filter, search and a
deep page; the same list as it was configured before this change ("before" rows); the
API's task list as it is on disk; the panel; and one pruning batch of each kind. Each
figure is the median of ``--runs`` requests after two warm-up requests.

The rows, by task id x (1 is oldest, finished over 8 days at an even pace up to a minute
ago, about 52,000 an hour):
- the newest 50,000, created within the last minute: queued (every 100th waiting), 64 of
  them running on 64 live workers;
- the rest finished: 2 % FAILED, 1 % CANCELLED, the others SUCCEEDED, each on one of
  1,936 ended workers that ran a contiguous stretch of them and stopped after it;
- queues default 70 %, big 20 %, gpu 10 %, and 100 tasks in "rare"; priority 0 (95 %),
  5, -5, and 50 for 1,000 tasks; 37 function paths, and one ("bench.rare.cleanup") on
  100 tasks;
- attempts for the oldest eighth (those past the 7-day retention), dependency edges,
  1,000 simulations that keep their tasks, and 24 hours of 30 s heartbeats for the live
  workers plus older ones that retention removes.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402 - after the path is set
from bench.harness import Database, say, time_page  # noqa: E402

PG_NAME = "crucible_bench_big"
SQLITE_PATH = Path(tempfile.gettempdir()) / "crucible_bench_big.sqlite3"
FULL_SIZE = 10_000_000


def database(tasks: int) -> Database:
    """The database's name and file: a trial of another size never touches the full one."""
    if tasks == FULL_SIZE:
        return Database(PG_NAME, SQLITE_PATH)
    return Database(f"{PG_NAME}_{tasks}",
                    SQLITE_PATH.with_name(f"crucible_bench_big_{tasks}.sqlite3"))


SPAN = 8 * 86400  # seconds the task rows were created over
BACKLOG = 50_000  # the newest tasks, not finished yet
RUNNING = 64
ENDED_WORKERS = 1936
CHUNK = 1_000_000
TASK_COLUMNS = (
    "func_path, args, kwargs, queue, priority, state, max_attempts, attempt, attempt_base,"
    " timeout, created_at, started_at, last_attempted_at, finished_at, worker_id, result,"
    " progress_message, error, crash_count, pending_dependencies, has_dependents, name"
)


def sql(statement: str, params: list[Any] | None = None) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])  # always interpolated: write % as %%


def is_pg() -> bool:
    from django.db import connection

    return connection.vendor == "postgresql"


# --- Filling it ---


def moment(x: str, n: int) -> str:
    """The SQL time of task row ``x``: finished rows evenly over the ``SPAN`` seconds that
    end a minute ago, the backlog within the last minute (1 ms apart)."""
    done = n - BACKLOG
    age = f"(CASE WHEN {x} > {done} THEN ({n} - {x}) * 0.001 ELSE 60 + ({done} - {x}) * " \
          f"{SPAN}.0 / {done} END)"
    if is_pg():
        return f"(now() - make_interval(secs => {age}))"
    return f"strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-' || {age} || ' seconds')"


def task_values(n: int) -> str:
    done = f"x <= {n - BACKLOG}"
    state = (
        f"CASE WHEN x > {n - BACKLOG} THEN (CASE WHEN x %% 100 = 0 THEN 'WAITING' ELSE 'QUEUED'"
        " END) WHEN (x * 7919) %% 1000 < 20 THEN 'FAILED'"
        " WHEN (x * 7919) %% 1000 < 30 THEN 'CANCELLED' ELSE 'SUCCEEDED' END"
    )
    failed = "(x * 7919) %% 1000 < 20"
    queue = (
        "CASE WHEN x %% 100000 = 5 THEN 'rare' WHEN x %% 10 < 7 THEN 'default'"
        " WHEN x %% 10 < 9 THEN 'big' ELSE 'gpu' END"
    )
    priority = (
        "CASE WHEN x %% 10000 = 3 THEN 50 WHEN x %% 100 < 95 THEN 0"
        " WHEN x %% 100 < 98 THEN 5 ELSE -5 END"
    )
    func = (
        "CASE WHEN x %% 100000 = 7 THEN 'bench.rare.cleanup'"
        " ELSE 'bench.tasks.sim_' || (x %% 37) END"
    )
    worker = f"CASE WHEN {done} THEN 1 + (x - 1) * {ENDED_WORKERS} / {n - BACKLOG} END"
    at = moment("x", n)
    false = "false" if is_pg() else "0"
    jsonb = "::jsonb" if is_pg() else ""
    return (
        f"{func}, '[1, 2]', '{{}}', {queue}, {priority}, {state}, 3, CASE WHEN {done} THEN 1"
        f" ELSE 0 END, 0, 3600.0, {at}, CASE WHEN {done} THEN {at} END,"
        f" CASE WHEN {done} THEN {at} END, CASE WHEN {done} THEN {at} END, {worker},"
        f" CASE WHEN {done} AND NOT ({failed}) THEN '{{\"ok\": true}}'{jsonb} END, '',"
        f" CASE WHEN {done} AND {failed} THEN 'ValueError: boom' ELSE '' END, 0, 0, {false}, ''"
    )


def series(first: int, last: int) -> str:
    return f"({series_select(first, last)}) AS s"


@contextmanager
def without_indexes(table: str) -> Iterator[None]:
    """Drop the table's secondary indexes for a bulk insert and build them again after."""
    from django.db import connection

    with connection.cursor() as cursor:
        if is_pg():
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s"
                " AND indexname NOT IN (SELECT conname FROM pg_constraint)",
                [table],
            )
        else:
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s"
                " AND sql IS NOT NULL",
                [table],
            )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
    yield
    with connection.cursor() as cursor:
        for _, definition in indexes:
            cursor.execute(definition)


def fill_workers(n: int) -> None:
    """Ended worker w ran task rows ((w-1)*k, w*k] and stopped after the last of them."""
    from django.db import connection

    from workers.models import Worker

    per = (n - BACKLOG) / ENDED_WORKERS
    ended = [Worker(node=f"node-{w % 4}", state="DEAD" if w % 10 else "FAILED", pid=None,
                    queues=["default"], tasks_succeeded=int(per)) for w in range(ENDED_WORKERS)]
    live = [Worker(node=f"node-{w % 4}", state="RUNNING", pid=4_000_000 + w,
                   queues=["default", "big", "gpu"]) for w in range(RUNNING)]
    Worker.objects.bulk_create(ended + live, batch_size=500)
    started, stopped = moment(f"(id - 1) * {per}", n), moment(f"id * {per}", n)
    sql(f"UPDATE workers_worker SET started_at = {started}, stopped_at = {stopped}"
        f" WHERE id <= {ENDED_WORKERS}")
    now = "now()" if connection.vendor == "postgresql" else "strftime('%%Y-%%m-%%d %%H:%%M:%%f')"
    sql(f"UPDATE workers_worker SET started_at = {now}, last_heartbeat = {now},"
        f" rss_bytes = 83886080, cpu_percent = 50.0 WHERE state = 'RUNNING'")


def fill_tasks(n: int, say: Callable[[str], None]) -> None:
    values = task_values(n)
    with without_indexes("workers_task"):
        for first in range(1, n + 1, CHUNK):
            last = min(n, first + CHUNK - 1)
            sql(f"INSERT INTO workers_task ({TASK_COLUMNS}) SELECT {values}"
                f" FROM {series(first, last)}")
            say(f"tasks up to {last:,}")
        say("building the task indexes")
    sql("UPDATE workers_task SET state = 'RUNNING', worker_id = w.id FROM"
        " (SELECT id, row_number() OVER (ORDER BY id) AS r FROM workers_worker"
        "  WHERE state = 'RUNNING') AS w,"
        " (SELECT id, row_number() OVER (ORDER BY id DESC) AS r FROM workers_task"
        f"  WHERE state = 'QUEUED' ORDER BY id DESC LIMIT {RUNNING}) AS t"
        " WHERE workers_task.id = t.id AND w.r = t.r")
    sql("UPDATE workers_worker SET current_task_id = (SELECT t.id FROM workers_task t"
        " WHERE t.state = 'RUNNING' AND t.worker_id = workers_worker.id)"
        " WHERE state = 'RUNNING'")


def fill_history(n: int) -> None:
    """Attempts and dependency edges of the oldest eighth; live workers' heartbeats."""
    old = n // 8
    true = "true" if is_pg() else "1"
    sql("INSERT INTO workers_taskattempt (task_id, number, worker_id, worker_label,"
        " started_at, finished_at, outcome, error, exception_class, traceback, log_tail)"
        " SELECT id, 1, worker_id, 'worker ' || worker_id, started_at, finished_at,"
        " CASE state WHEN 'SUCCEEDED' THEN 'SUCCEEDED' WHEN 'FAILED' THEN 'ERROR'"
        " ELSE 'CANCELLED' END, error, '', '', '' FROM workers_task WHERE id <= %s",
        [old])
    sql("INSERT INTO workers_taskdependency (task_id, depends_on_id, satisfied)"
        f" SELECT id + 1, id, {true} FROM workers_task WHERE id < %s AND id %% 100 = 0",
        [old])
    false = "false" if is_pg() else "0"
    sql("INSERT INTO workers_taskdependency (task_id, depends_on_id, satisfied)"
        f" SELECT id, id - 1, {false} FROM workers_task WHERE state = 'WAITING'")
    sql("UPDATE workers_task SET has_dependents = %s WHERE id IN"
        " (SELECT depends_on_id FROM workers_taskdependency)", [True])
    sql("UPDATE workers_task SET pending_dependencies = 1 WHERE state = 'WAITING'")
    at = ("now() - make_interval(secs => s.x * 30)" if is_pg()
          else "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-' || (s.x * 30) || ' seconds')")
    sql("INSERT INTO workers_heartbeat (worker_id, at, rss_bytes, cpu_percent)"
        f" SELECT w.id, {at}, 83886080, 40.0 FROM workers_worker w CROSS JOIN"
        f" ({series_select(0, 3880)}) AS s WHERE w.state = 'RUNNING'")


def series_select(first: int, last: int) -> str:
    if is_pg():
        return f"SELECT generate_series({first}::bigint, {last}::bigint) AS x"
    return (
        f"WITH RECURSIVE q(x) AS (SELECT {first} UNION ALL SELECT x + 1 FROM q"
        f" WHERE x < {last}) SELECT x FROM q"
    )


def fill_simulations(n: int) -> None:
    """A thousand simulations own tasks past the retention, which pruning must keep."""
    from simulations.models import Simulation

    step = n // 8 // 1000
    Simulation.objects.bulk_create(
        Simulation(kind="slab", memory_mb=64, task_id=step * i + 1) for i in range(1000)
    )


def analyze() -> None:
    if is_pg():
        sql("VACUUM ANALYZE")  # what autovacuum does to tables this size
    else:
        sql("ANALYZE")


def build(n: int, say: Callable[[str], None]) -> dict[str, float]:
    from django.core.management import call_command

    step = harness.Steps()
    step("migrate", lambda: call_command("migrate", verbosity=0))
    if not is_pg():
        sql("PRAGMA cache_size = -1000000")
        sql("PRAGMA foreign_keys = OFF")
    step("workers", lambda: fill_workers(n))
    step("tasks", lambda: fill_tasks(n, say))
    step("history", lambda: fill_history(n))
    step("simulations", lambda: fill_simulations(n))
    step("analyze", analyze)
    return step.seconds


# --- Timing ---


def legacy_admin_site() -> Any:
    """The task list as it was configured before this change, to time it side by side."""
    from django.contrib import admin
    from django.core.paginator import Paginator

    from workers.admin import TaskAdmin
    from workers.models import Task

    class LegacyTaskAdmin(TaskAdmin):
        list_filter = ("state", "queue", "priority", ("worker", admin.RelatedOnlyFieldListFilter))
        sortable_by = None
        paginator = Paginator
        show_full_result_count = True
        show_facets = admin.ShowFacets.ALLOW

        def get_search_results(self, request: Any, queryset: Any, search_term: str) -> Any:
            return admin.ModelAdmin.get_search_results(self, request, queryset, search_term)

    site = admin.AdminSite(name="legacy")
    site.register(Task, LegacyTaskAdmin)
    return site


# The URL configuration of the timing: the project's, plus the "before" admin.
urlpatterns: list[Any] = []


def mount_legacy() -> None:
    from django.urls import path

    import config.urls

    urlpatterns[:] = [path("before/", legacy_admin_site().urls), *config.urls.urlpatterns]


def client() -> Any:
    from django.contrib.auth import get_user_model
    from django.test import Client

    users = get_user_model().objects
    user = users.filter(username="bench").first() or users.create_superuser(
        "bench", "bench@localhost", "bench"
    )
    browser = Client()
    browser.force_login(user)
    return browser


def time_call(action: Callable[[], Any], runs: int) -> dict[str, Any]:
    action()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "min_ms": round(min(times), 1),
            "max_ms": round(max(times), 1)}


def admin_urls() -> dict[str, str]:
    from workers.models import Task, Worker

    newest = Task.objects.order_by("-id").values_list("id", flat=True)[0]
    worker = Worker.objects.filter(state="DEAD").order_by("-id").values_list("id", flat=True)[0]
    base = "workers/task/"
    return {
        "list (newest first)": base,
        "state = FAILED": f"{base}?state__exact=FAILED",
        "state = RUNNING": f"{base}?state__exact=RUNNING",
        "state = WAITING": f"{base}?state__exact=WAITING",
        "queue = gpu": f"{base}?queue=gpu",
        "queue = rare (100 rows)": f"{base}?queue=rare",
        "priority = 5": f"{base}?priority=5",
        "priority = 50 (1,000 rows)": f"{base}?priority=50",
        "worker = an ended one": f"{base}?worker__id__exact={worker}",
        "state = FAILED and queue = gpu": f"{base}?state__exact=FAILED&queue=gpu",
        "search: an id": f"{base}?q={newest - 123_456}",
        "search: sim_17 (1 in 37)": f"{base}?q=sim_17",
        "search: cleanup (100 rows)": f"{base}?q=cleanup",
        "search: no match": f"{base}?q=nothing-like-this",
        "page 50": f"{base}?p=50",
        "oldest first": f"{base}?o=1",
        "one task's page": f"{base}{newest - 1000}/change/",
    }


def time_admin(browser: Any, runs: int, say: Callable[[str], None]) -> dict[str, Any]:
    results = {}
    for name, url in admin_urls().items():
        results[name] = time_page(browser, f"/admin/{url}", runs, {})
        say(f"admin {name}: {results[name]['median_ms']} ms")
    return results


BEFORE = ("list (newest first)", "queue = gpu", "priority = 50 (1,000 rows)",
          "worker = an ended one", "search: sim_17 (1 in 37)", "search: no match")


def time_admin_before(browser: Any, runs: int, say: Callable[[str], None]) -> dict[str, Any]:
    urls = admin_urls()
    results = {}
    for name in BEFORE:
        results[name] = time_page(browser, f"/before/{urls[name]}", runs, {})
        say(f"before {name}: {results[name]['median_ms']} ms")
    return results


def time_api(browser: Any, runs: int, say: Callable[[str], None]) -> dict[str, Any]:
    from workers.models import Task, Worker

    newest = Task.objects.order_by("-id").values_list("id", flat=True)[0]
    worker = Worker.objects.filter(state="DEAD").order_by("-id").values_list("id", flat=True)[0]
    urls = {
        "list (newest first)": "",
        "state = FAILED": "?state=FAILED",
        "queue = gpu": "?queue=gpu",
        "queue = rare (100 rows)": "?queue=rare",
        "priority = 50 (1,000 rows)": "?priority=50",
        "worker = an ended one": f"?worker={worker}",
        "func_path_prefix = bench.rare": "?func_path_prefix=bench.rare",
        "a page in the middle": f"?after={newest // 2}",
    }
    results = {}
    for name, query in urls.items():
        results[name] = time_page(browser, f"/api/tasks/{query}", runs, {})
        say(f"api {name}: {results[name]['median_ms']} ms")
    return results


def time_panel(browser: Any, runs: int, say: Callable[[str], None]) -> dict[str, Any]:
    from datetime import timedelta

    from django.db.models import Count
    from django.utils import timezone

    from workers.models import Task
    from workers.web import status

    def before() -> list[Any]:  # the figure's query as it was: the node's clock, state index
        since = timezone.now() - timedelta(hours=1)
        failed = Task.objects.filter(state="FAILED", finished_at__gte=since)
        return list(failed.values("queue").annotate(n=Count("id")))

    def now() -> list[Any]:
        return list(status.failed_since(3600).values("queue").annotate(n=Count("*")))

    results = {
        "failed in the last hour, before": time_call(before, runs),
        "failed in the last hour": time_call(now, runs),
        "queue counts with failed in the last hour": time_call(status.queue_counts, runs),
        "panel fragment": time_page(browser, "/htmx/workers/status/", runs, {"HX-Request": "true"}),
        "status JSON": time_page(browser, "/api/workers/status/", runs, {}),
    }
    for name, figures in results.items():
        say(f"panel {name}: {figures['median_ms']} ms")
    return results


def time_pruning(runs: int, say: Callable[[str], None]) -> dict[str, Any]:
    """Calls of ``retention.prune(max_batches=1)``, one batch of each kind per call.

    The first call meets 500 ended workers that nothing points at any more (their tasks
    pruned already), so it deletes them, each checked by the database against the task
    table. Later calls meet the ended workers whose 1.25 million old tasks still name
    them: each clears 500 of those names.
    """
    from datetime import timedelta

    from django.utils import timezone

    from workers.models import Heartbeat, Task, Worker
    from workers.queue import retention

    long_ago = timezone.now() - timedelta(days=9)
    Worker.objects.bulk_create(
        Worker(node="node-old", state="DEAD", started_at=long_ago, stopped_at=long_ago)
        for _ in range(retention.BATCH_SIZE)
    )
    counts = (Task.objects.count(), Worker.objects.count(), Heartbeat.objects.count())
    calls = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        report = retention.prune(max_batches=1)
        calls.append({"ms": round((time.perf_counter() - started) * 1000, 1),
                      "pruned": str(report)})
    after = (Task.objects.count(), Worker.objects.count(), Heartbeat.objects.count())
    later = [call["ms"] for call in calls[1:]]
    figures = {
        "first_call_ms": calls[0]["ms"],
        "median_ms": round(statistics.median(later), 1),
        "min_ms": min(later),
        "max_ms": max(later),
        "batch_size": retention.BATCH_SIZE,
        "calls": calls,
        "deleted": {"tasks": counts[0] - after[0], "workers": counts[1] - after[1],
                    "samples": counts[2] - after[2]},
    }
    say(f"pruning: first call {figures['first_call_ms']} ms ({calls[0]['pruned']}), "
        f"then {figures['median_ms']} ms")
    return figures


def versions() -> dict[str, str]:
    import platform

    import django
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT version()" if is_pg() else "SELECT sqlite_version()")
        server = cursor.fetchone()[0]
    return {"python": platform.python_version(), "django": django.get_version(),
            "database": server.split(" on ")[0], "machine": f"{os.cpu_count()} CPUs, "
            f"{round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB"}


SECTIONS = ("admin", "admin_before", "api", "panel", "pruning")


def run(
    kind: str, tasks: int, runs: int, reuse: bool, say: Callable[[str], None], *,
    sections: tuple[str, ...] = SECTIONS,
) -> dict[str, Any]:
    from django.test.utils import override_settings

    fresh = harness.open_database(database(tasks), kind, reuse, "crb-big-")
    result: dict[str, Any] = {"database": kind, "tasks": tasks, "started": harness.utc_now(),
                              **versions()}
    if fresh:
        result["build_seconds"] = build(tasks, say)
    from workers.models import Task

    result["task_rows"] = Task.objects.count()
    mount_legacy()
    with override_settings(ROOT_URLCONF=__name__, STORAGES=harness.STATIC):
        browser = client()
        if "admin" in sections:
            result["admin"] = time_admin(browser, runs, say)
        if "admin_before" in sections:
            result["admin_before"] = time_admin_before(browser, max(3, runs // 3), say)
        if "api" in sections:
            result["api"] = time_api(browser, runs, say)
        if "panel" in sections:
            result["panel"] = time_panel(browser, runs, say)
    if "pruning" in sections:
        result["pruning"] = time_pruning(5, say)
    result["finished"] = harness.utc_now()
    return result


def table(result: dict[str, Any]) -> str:
    lines = [f"{result['database']}: {result['task_rows']:,} task rows, median of the runs",
             f"{'view':58} {'median':>9} {'min':>8} {'max':>8} {'db':>7} {'queries':>7}"]
    for section in ("admin", "admin_before", "api", "panel"):
        for name, figures in result.get(section, {}).items():
            lines.append(f"{section + ': ' + name:58} {figures['median_ms']:>9} "
                         f"{figures['min_ms']:>8} {figures['max_ms']:>8} "
                         f"{figures.get('db_median_ms', ''):>7} {figures.get('queries', ''):>7}")
    if prune := result.get("pruning"):
        lines.append(f"{'pruning: first call (500 tasks, 500 workers, 500 samples)':58} "
                     f"{prune['first_call_ms']:>9}")
        lines.append(f"{'pruning: later calls, one batch of each kind':58} "
                     f"{prune['median_ms']:>9} {prune['min_ms']:>8} {prune['max_ms']:>8}")
    return "\n".join(lines)


def main() -> None:
    parser = harness.arguments(__doc__ or "", FULL_SIZE)
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"which to time, of {','.join(SECTIONS)}")
    args = parser.parse_args()
    sections = tuple(filter(None, args.sections.split(",")))
    if unknown := set(sections) - set(SECTIONS):
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    harness.finish(args, lambda: run(args.db, args.tasks, args.runs, args.reuse, say,
                                     sections=sections),
                   lambda: database(args.tasks).drop(args.db), table)


if __name__ == "__main__":
    main()

"""Server time of the live task views with 64 workers and 1,000,000 task rows.

    .venv/bin/python bench/task_views.py --db sqlite|postgres [--tasks 1000000] [--runs 9]
        [--keep] [--reuse] [--json out.json]

Builds its database with ``bench/big_tables.py``'s rows at this size (its own SQLite file or
PostgreSQL database, never the test database; 64 running tasks on 64 live workers, 1,000
simulations), then gives 500 of the queued tasks a ``run_after`` an hour ahead (scheduled)
and the simulations names and parameters to search for. It times, through Django's test
Client as a signed-in superuser (the whole middleware stack), the task list's refresh (the
rows alone, as the list's script asks for them) and the whole page, with filters and
searches; a queue's page; the bulk confirmation's count; a running task's page; and the
panel fragment. Each figure is the median of ``--runs`` requests after two warm-ups; "cpu"
is this process's CPU time of those requests (the web server's Python and, on SQLite, the
database's work; not PostgreSQL's server). A reused database is first migrated to the
current code (new indexes are built then, before any timing).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import big_tables as big  # noqa: E402 - after the path is set
from bench import harness  # noqa: E402

ROWS = {"HX-Request": "true", "HX-Target": "cr-task-rows"}
SCHEDULED = 500


def prepare() -> None:
    """Scheduled tasks and searchable simulations (idempotent, so a reused database works)."""
    later = ("now() + interval '1 hour'" if big.is_pg()
             else "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '+1 hour')")
    big.sql(f"UPDATE workers_task SET run_after = {later} WHERE id IN (SELECT id FROM"
            f" workers_task WHERE state = 'QUEUED' ORDER BY id LIMIT {SCHEDULED})")
    params = ("jsonb_build_object('h', id %% 10, 'material', 'steel')" if big.is_pg()
              else "json_object('h', id %% 10, 'material', 'steel')")
    big.sql(f"UPDATE simulations_simulation SET name = 'kiln-' || id, parameters = {params}")
    big.analyze()


def urls() -> dict[str, tuple[str, dict[str, str]]]:
    from workers.models import Task

    running = Task.objects.filter(state="RUNNING").values_list("id", flat=True).first()
    newest = Task.objects.order_by("-id").values_list("id", flat=True)[0]
    base = "/admin/workers/task/"
    return {
        "refresh: newest first": (base, ROWS),
        "refresh: state = RUNNING (64)": (f"{base}?state__exact=RUNNING", ROWS),
        "refresh: state = SCHEDULED (500)": (f"{base}?state__exact=SCHEDULED", ROWS),
        "refresh: state = QUEUED (due now)": (f"{base}?state__exact=QUEUED", ROWS),
        "refresh: state = FAILED": (f"{base}?state__exact=FAILED", ROWS),
        "refresh: queue = gpu": (f"{base}?queue=gpu", ROWS),
        "refresh: search an id": (f"{base}?q={newest - 12_345}", ROWS),
        "refresh: search a simulation's name": (f"{base}?q=kiln-500", ROWS),
        "refresh: search h=3 (100 simulations)": (f"{base}?q=h%3D3", ROWS),
        "refresh: search steel (every simulation)": (f"{base}?q=steel", ROWS),
        "whole list page": (base, {}),
        "whole page: state = SCHEDULED": (f"{base}?state__exact=SCHEDULED", {}),
        "queue page: default": (f"{base}queues/default/", {}),
        "queue page refresh: default": (f"{base}queues/default/", {"HX-Request": "true"}),
        "bulk cancel count: state = RUNNING": (f"{base}bulk/cancel/?state__exact=RUNNING", {}),
        "bulk cancel count: queue = rare (100)": (f"{base}bulk/cancel/?queue=rare", {}),
        "bulk retry count: search h=3": (f"{base}bulk/retry/?q=h%3D3", {}),
        "a running task's page": (f"{base}{running}/change/", {}),
        "panel fragment (cards with ETA)": ("/htmx/workers/status/", {"HX-Request": "true"}),
    }


def run(kind: str, tasks: int, runs: int, reuse: bool) -> dict[str, Any]:
    from django.core.management import call_command
    from django.test.utils import override_settings

    fresh = harness.open_database(big.database(tasks), kind, reuse, "crb-views-")
    result: dict[str, Any] = {"database": kind, "tasks": tasks, "started": harness.utc_now(),
                              **big.versions()}
    if fresh:
        result["build_seconds"] = big.build(tasks, harness.say)
    else:
        call_command("migrate", verbosity=0)
    prepare()
    from workers.models import Task, Worker

    result["task_rows"] = Task.objects.count()
    result["live_workers"] = Worker.objects.filter(state="RUNNING").count()
    with override_settings(STORAGES=harness.STATIC):
        browser = big.client()
        result["views"] = {}
        for name, (url, headers) in urls().items():
            result["views"][name] = harness.time_page(browser, url, runs, headers)
            harness.say(f"{name}: {result['views'][name]['median_ms']} ms")
    result["finished"] = harness.utc_now()
    result["load_average"] = os.getloadavg()
    return result


def table(result: dict[str, Any]) -> str:
    lines = [f"{result['database']}: {result['task_rows']:,} task rows, "
             f"{result['live_workers']} live workers, median of the runs",
             f"{'view':48} {'median':>8} {'min':>8} {'max':>8} {'cpu':>7} {'db':>7} "
             f"{'queries':>7}"]
    for name, f in result["views"].items():
        lines.append(f"{name:48} {f['median_ms']:>8} {f['min_ms']:>8} {f['max_ms']:>8} "
                     f"{f['cpu_median_ms']:>7} {f['db_median_ms']:>7} {f['queries']:>7}")
    lines.append(f"load average at the end: {result['load_average']}")
    return "\n".join(lines)


def main() -> None:
    harness.main(__doc__ or "", 1_000_000,
                 lambda args: run(args.db, args.tasks, args.runs, args.reuse),
                 big.database, table)


if __name__ == "__main__":
    main()

"""Server time of the charts' data and HTML with 64 workers and 1,000,000 tasks over a week.

    .venv/bin/python bench/charts.py --db sqlite|postgres [--tasks 1000000] [--runs 9]
        [--keep] [--reuse] [--json out.json]

Builds a database of its own (the SQLite file ``<tmp>/crucible_bench_charts.sqlite3``, or
the PostgreSQL database ``crucible_bench_charts``; never the test database) with the
project's migrations:
- 64 RUNNING workers, each with a week of heartbeats every 30 s; once they are sampled, all
  but the last 24 hours are deleted (what WORKER_HEARTBEAT_RETENTION keeps);
- ``--tasks`` task rows: all but 10,000 finished evenly over the 7 days that end a minute
  ago (2 % FAILED, 1 % CANCELLED; queues default 70 %, big 20 %, gpu 10 %), each created
  30 s and started 5 s before it finished; 10,000 queued (every 100th waiting), 64 running;
- the charts' samples of the whole week, written by ``charts.sampling`` a day at a time
  (minutes, then their roll-ups), then pruned by span as the tick would keep them (a day of
  minutes, two of quarter hours, eight of hours).

Then, in this process, through Django's test Client as a signed-in superuser (the whole
middleware stack, no network), it times the JSON (``/api/charts/``) and the HTML section
(``/htmx/charts/``) for each range, all queues and one queue, and the page; each figure is
the median of ``--runs`` requests after two warm-up requests. It also times writing one
minute's samples (what the tick does once a minute) against these rows.

With ``--reuse`` the rows were written some time ago: the charts then read the database's
clock as usual but take "now" to be a minute after the last sampled minute, so every range
covers as many rows as it did when they were fresh.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import big_tables as big  # noqa: E402  (after the path is set)
from bench import harness  # noqa: E402

DATABASE = harness.Database("crucible_bench_charts",
                    Path(tempfile.gettempdir()) / "crucible_bench_charts.sqlite3")
WEEK = 7 * 86400
BACKLOG = 10_000
WORKERS = 64
HEARTBEATS = 7 * 2880 + 240  # a week and two hours at 30 s; a day is kept after sampling
TASK_COLUMNS = (
    "func_path, args, kwargs, queue, priority, state, max_attempts, attempt, attempt_base,"
    " timeout, created_at, started_at, last_attempted_at, finished_at, progress_message, error,"
    " crash_count, pending_dependencies, has_dependents, name"
)


# --- Filling it ---


def ago(seconds: str) -> str:
    """The database's time ``seconds`` (an SQL expression) ago."""
    if big.is_pg():
        return f"(now() - make_interval(secs => {seconds}))"
    return f"strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-' || ({seconds}) || ' seconds')"


def task_values(n: int) -> str:
    done = n - BACKLOG
    finished = f"x <= {done}"
    age = f"(60 + ({done} - x) * {WEEK}.0 / {done})"
    state = (
        f"CASE WHEN x > {done} THEN (CASE WHEN x %% 100 = 0 THEN 'WAITING' ELSE 'QUEUED' END)"
        " WHEN (x * 7919) %% 1000 < 20 THEN 'FAILED'"
        " WHEN (x * 7919) %% 1000 < 30 THEN 'CANCELLED' ELSE 'SUCCEEDED' END"
    )
    queue = "CASE WHEN x %% 10 < 7 THEN 'default' WHEN x %% 10 < 9 THEN 'big' ELSE 'gpu' END"
    at = f"CASE WHEN {finished} THEN {ago(age)} END"
    started = f"CASE WHEN {finished} THEN {ago(age + ' + 5')} END"
    created = f"CASE WHEN {finished} THEN {ago(age + ' + 30')} ELSE {ago('1')} END"
    false = "false" if big.is_pg() else "0"
    return (
        f"'bench.tasks.sim_' || (x %% 37), '[]', '{{}}', {queue}, 0, {state}, 3,"
        f" CASE WHEN {finished} THEN 1 ELSE 0 END, 0, 3600.0, {created}, {started},"
        f" {started}, {at}, '', '', 0, 0, {false}, ''"
    )


def fill_workers() -> None:
    from workers.models import Worker

    Worker.objects.bulk_create(
        Worker(node=f"node-{w % 4}", state="RUNNING", pid=4_000_000 + w,
               queues=["default", "big", "gpu"]) for w in range(WORKERS)
    )
    rss = "(83886080 + (w.id %% 16) * 4194304 + (s.x %% 60) * 65536)"
    big.sql("INSERT INTO workers_heartbeat (worker_id, at, rss_bytes, cpu_percent)"
            f" SELECT w.id, {ago('s.x * 30')}, {rss}, (s.x + w.id) %% 100"
            f" FROM workers_worker w CROSS JOIN ({big.series_select(0, HEARTBEATS - 1)}) AS s")


def fill_tasks(n: int, say: Callable[[str], None]) -> None:
    values = task_values(n)
    with big.without_indexes("workers_task"):
        for first in range(1, n + 1, big.CHUNK):
            last = min(n, first + big.CHUNK - 1)
            big.sql(f"INSERT INTO workers_task ({TASK_COLUMNS}) SELECT {values}"
                    f" FROM ({big.series_select(first, last)}) AS s")
            say(f"tasks up to {last:,}")
    big.sql(f"UPDATE workers_task SET state = 'RUNNING' WHERE id IN (SELECT id FROM"
            f" workers_task WHERE state = 'QUEUED' ORDER BY id DESC LIMIT {WORKERS})")


def fill_samples(say: Callable[[str], None]) -> None:
    """The week's samples, a day at a time, as the tick would have written and kept them."""
    from workers.charts import sampling
    from workers.queue import clock

    end = sampling.floor(clock.now().timestamp() - sampling.SETTLE, sampling.MINUTE)
    start = sampling.floor(end - WEEK - 3600, sampling.HOUR)
    for day in range(start, end, 86400):
        sampling._write_minutes(day, min(day + 86400, end))
        for span in sampling.SPANS[1:]:
            sampling._roll_up(span)
        say(f"samples up to {time.strftime('%m-%d %H:%M', time.gmtime(min(day + 86400, end)))}")
    while not sampling.prune_batch(5000)[1]:
        pass
    big.sql(f"DELETE FROM workers_heartbeat WHERE at < {ago('86400')}")


def build(n: int, say: Callable[[str], None]) -> dict[str, float]:
    from django.core.management import call_command

    step = harness.Steps()
    step("migrate", lambda: call_command("migrate", verbosity=0))
    step("workers and heartbeats", fill_workers)
    step("tasks", lambda: fill_tasks(n, say))
    step("analyze", big.analyze)
    step("samples", lambda: fill_samples(say))
    step("analyze again", big.analyze)
    return step.seconds


# --- Timing ---


def urls() -> dict[str, str]:
    found = {}
    for name in ("hour", "day", "week"):
        found[f"JSON, all queues, {name}"] = f"/api/charts/?range={name}"
        found[f"JSON, queue gpu, {name}"] = f"/api/charts/?range={name}&queue=gpu"
    for name in ("hour", "day", "week"):
        found[f"HTML section, all queues, {name}"] = f"/htmx/charts/?range={name}"
        found[f"HTML section, queue gpu, {name}"] = f"/htmx/charts/?range={name}&queue=gpu"
    found["page, all queues, week"] = "/charts/?range=week"
    return found


def time_sampling(runs: int) -> dict[str, Any]:
    """Writing the last minute again (its rows exist: the same reads, inserts skipped)."""
    from workers.charts import sampling
    from workers.queue import clock

    end = sampling.floor(clock.now().timestamp() - sampling.SETTLE, sampling.MINUTE)
    return big.time_call(lambda: sampling._write_minutes(end - sampling.MINUTE, end), runs)


def pin_clock() -> Any:
    """Read the database's clock as usual, but answer a minute after the last worker sample
    (the heartbeats end where the rows were built; later minutes hold no worker rows)."""
    from django.db.models import Max

    from workers.charts import sampling
    from workers.charts.sampling import MINUTE
    from workers.models import WorkerSample
    from workers.queue import clock

    last = WorkerSample.objects.filter(span=MINUTE).aggregate(last=Max("bucket"))["last"]
    assert last is not None, "no samples to time"
    pinned = sampling.moment(last + MINUTE + 30)
    read = clock.now

    def now() -> Any:
        read()
        return pinned

    clock.now = now
    return pinned


def counts() -> dict[str, int]:
    from workers.models import Heartbeat, QueueSample, Task, WorkerSample

    return {"tasks": Task.objects.count(), "heartbeats": Heartbeat.objects.count(),
            "queue_samples": QueueSample.objects.count(),
            "worker_samples": WorkerSample.objects.count()}


def run(
    kind: str, tasks: int, runs: int, reuse: bool, say: Callable[[str], None]
) -> dict[str, Any]:
    from django.test.utils import override_settings

    fresh = harness.open_database(DATABASE, kind, reuse, "crb-charts-")
    result: dict[str, Any] = {**big.versions(), "kind": kind, "started": harness.utc_now()}
    if fresh:
        result["build_seconds"] = build(tasks, say)
    result["rows"] = counts()
    if not fresh:
        result["pinned_now"] = pin_clock().isoformat()
    with override_settings(STORAGES=harness.STATIC):
        browser = big.client()
        result["views"] = {}
        for name, url in urls().items():
            result["views"][name] = harness.time_page(browser, url, runs)
            say(f"{name}: {result['views'][name]['median_ms']} ms")
    result["sampling_one_minute"] = time_sampling(runs)
    result["finished"] = harness.utc_now()
    return result


def table(result: dict[str, Any]) -> str:
    rows = result["rows"]
    lines = [f"{result['kind']}: {rows['tasks']:,} tasks, {rows['heartbeats']:,} heartbeats,"
             f" {rows['queue_samples']:,} queue and {rows['worker_samples']:,} worker samples",
             f"{'view':36} {'median':>7} {'min':>7} {'max':>7} {'cpu':>7} {'db':>6} "
             f"{'queries':>7} {'KB':>5} {'load':>5}"]
    for name, f in result["views"].items():
        lines.append(f"{name:36} {f['median_ms']:>7} {f['min_ms']:>7} {f['max_ms']:>7} "
                     f"{f['cpu_median_ms']:>7} {f['db_median_ms']:>6} {f['queries']:>7} "
                     f"{f['bytes'] // 1024:>5} {f['load_average']:>5.1f}")
    one = result["sampling_one_minute"]
    lines.append(f"{'sampling one minute':36} {one['median_ms']:>7} {one['min_ms']:>7} "
                 f"{one['max_ms']:>7}")
    return "\n".join(lines)


def main() -> None:
    harness.main(__doc__ or "", 1_000_000,
                 lambda args: run(args.db, args.tasks, args.runs, args.reuse, harness.say),
                 DATABASE, table)


if __name__ == "__main__":
    main()

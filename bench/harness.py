"""What the benchmarks on a big database of their own share: the database's place, the
command line, timed build steps, timing a page, and how a run ends (kept or dropped).

Used by ``big_tables.py``, ``charts.py`` and ``task_views.py``; never the test database.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
# Plain file storage: the pages render without a collected static manifest.
STATIC = {"staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
          "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"}}


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def utc_now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())


# --- The database: a PostgreSQL database or an SQLite file of the benchmark's own ---


def _admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(statement)


@dataclass(frozen=True, slots=True)
class Database:
    pg_name: str
    sqlite_path: Path

    def url(self, kind: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{self.sqlite_path}"
        return f"postgres://postgres@127.0.0.1:5432/{self.pg_name}"

    def exists(self, kind: str) -> bool:
        if kind == "sqlite":
            return self.sqlite_path.exists()
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [self.pg_name])
            return found.fetchone() is not None

    def drop(self, kind: str) -> None:
        if kind == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.sqlite_path}{suffix}").unlink(missing_ok=True)
        else:
            _admin(f"DROP DATABASE IF EXISTS {self.pg_name} WITH (FORCE)")

    def create(self, kind: str) -> None:
        self.drop(kind)
        if kind == "postgres":
            _admin(f"CREATE DATABASE {self.pg_name}")

    def setup_django(self, kind: str, workdir: Path) -> None:
        os.environ.update(
            DJANGO_SETTINGS_MODULE="config.settings",
            DATABASE_URL=self.url(kind),
            WORKER_LOG_DIR=str(workdir / "logs"),
            WORKER_NODE_ADDRESS="bench-node",
            ALLOWED_HOSTS="testserver",
            LOG_LEVEL="WARNING",
        )
        import django

        django.setup()


def open_database(place: Database, kind: str, reuse: bool, prefix: str) -> bool:
    """Set Django up on ``place``, made afresh unless ``reuse`` finds it kept; True if new."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    fresh = not (reuse and place.exists(kind))
    if fresh:
        place.create(kind)
    place.setup_django(kind, workdir)
    return fresh


# --- Building it, step by step ---


class Steps:
    """Runs build steps, saying and keeping how long each took (seconds)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, action: Callable[[], object]) -> None:
        started = time.perf_counter()
        action()
        self.seconds[name] = round(time.perf_counter() - started, 1)
        say(f"{name}: {self.seconds[name]} s")


# --- Timing a page ---


class QueryClock:
    """Times each statement of a request precisely (Django rounds SQLite's to 1 ms)."""

    def __init__(self) -> None:
        self.times: list[tuple[float, str]] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.times.append(((time.perf_counter() - started) * 1000, sql))


def time_page(browser: Any, url: str, runs: int, headers: dict[str, str] | None = None
              ) -> dict[str, Any]:
    """Wall time, this process's CPU time and time in database calls: medians of ``runs``
    requests after two warm-ups.

    On a machine shared with other work the wall time includes waiting for a core; the CPU
    time does not (on SQLite it includes the database's work, which runs in this process).
    """
    from django.db import connection

    for _ in range(2):
        warm = browser.get(url, headers=headers or {})
        assert warm.status_code == 200, (url, warm.status_code, warm.content[:300])
    wall, cpu, db = [], [], []
    slowest: tuple[float, str] = (0.0, "")
    for _ in range(runs):
        clock = QueryClock()
        with connection.execute_wrapper(clock):
            started, used = time.perf_counter(), time.process_time()
            response = browser.get(url, headers=headers or {})
            cpu.append((time.process_time() - used) * 1000)
            wall.append((time.perf_counter() - started) * 1000)
        db.append(sum(ms for ms, _ in clock.times))
        slowest = max([slowest, *clock.times])
    return {
        "median_ms": round(statistics.median(wall), 1), "min_ms": round(min(wall), 1),
        "max_ms": round(max(wall), 1), "cpu_median_ms": round(statistics.median(cpu), 1),
        "db_median_ms": round(statistics.median(db), 1), "queries": len(clock.times),
        "slowest_query_ms": round(slowest[0], 1), "slowest_query": slowest[1][:600],
        "bytes": len(response.content), "load_average": os.getloadavg()[0],
    }


# --- The command line, and the end of a run ---


def arguments(doc: str, tasks: int) -> argparse.ArgumentParser:
    """The options every big-database benchmark takes; a script may add its own."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], required=True)
    parser.add_argument("--tasks", type=int, default=tasks)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="time a kept database again")
    parser.add_argument("--json", type=Path)
    return parser


def main(doc: str, tasks: int, run: Callable[[argparse.Namespace], dict[str, Any]],
         place: Database | Callable[[int], Database],
         table: Callable[[dict[str, Any]], str]) -> None:
    """A benchmark's command line: its database is ``place`` (or ``place(tasks)``)."""
    args = arguments(doc, tasks).parse_args()

    def drop() -> None:
        (place if isinstance(place, Database) else place(args.tasks)).drop(args.db)

    finish(args, lambda: run(args), drop, table)


def finish(args: argparse.Namespace, measure: Callable[[], dict[str, Any]],
           drop: Callable[[], None], table: Callable[[dict[str, Any]], str]) -> None:
    """Measure, drop the database unless ``--keep``, print the table, write ``--json``."""
    try:
        result = measure()
    finally:
        if not args.keep:
            from django.db import connections

            connections.close_all()
            drop()
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))

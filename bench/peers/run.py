#!/usr/bin/env python
"""Benchmark two peer task queues, django-tasks-db and procrastinate, on this machine.

Run it with the peers' own venv, never the project's:

    bench/peers/setup.sh
    bench/.venv-peers/bin/python bench/peers/run.py [--tasks N] [--samples M] [--only KEY]

For each scenario (peer x database) it creates a fresh database, migrates the
throwaway project in bench/peers/project/ into it, then measures:

  drain   enqueue N no-op tasks, start 2 workers (the peer's own worker command),
          time from worker start until the peer's table shows all N finished.
  pickup  with 1 idle worker running, enqueue one task at a time; the task stamps
          time.time() when it starts; latency = start - enqueue() return.

Every subprocess has a timeout, every worker is stopped and every database
dropped, also on errors. Results: a table on stdout, JSON in --json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

try:
    import psycopg
    from psycopg import sql
except ImportError:  # pragma: no cover - wrong interpreter
    sys.exit("run.py needs bench/.venv-peers/bin/python (create it with bench/peers/setup.sh)")

from machine import ForeignLoad, wait_until_quiet

logger = logging.getLogger("bench.peers")

HERE = Path(__file__).resolve().parent
PROJECT = HERE / "project"
DEFAULT_JSON = HERE / "results.json"
PYTHON = sys.executable

# django-tasks-db's `db_worker --interval` default (seconds between polls when idle).
TASKS_DB_DEFAULT_INTERVAL = 1.0
DRAIN_WORKERS = 2
STOP_GRACE_SECONDS = 10.0


class BenchError(RuntimeError):
    """A measurement could not be made; the message says why."""


@dataclass(frozen=True)
class Scenario:
    key: str
    peer: str  # "tasks_db" | "procrastinate"
    db: str  # "sqlite" | "pg"
    label: str


SCENARIOS = (
    Scenario("tasks_db_sqlite", "tasks_db", "sqlite", "django-tasks-db / SQLite (WAL)"),
    Scenario("tasks_db_pg", "tasks_db", "pg", "django-tasks-db / PostgreSQL"),
    Scenario("procrastinate_pg", "procrastinate", "pg", "procrastinate / PostgreSQL"),
)


@dataclass(frozen=True)
class Options:
    tasks: int
    samples: int
    only: tuple[str, ...]
    json_path: Path
    tasks_db_interval: float
    conn_max_age: int
    drain_timeout: float
    drain_runs: int
    settle: float
    pg_host: str
    pg_port: int
    pg_user: str
    pg_admin_db: str


# --- child processes ------------------------------------------------------------------


class Processes:
    """The child processes of one scenario; `stop_all` ends every one still running.

    Each child gets its own session, so stopping it signals its process group (the
    child and anything it started) by id, and nothing else. The group is only
    signalled while the child is alive, so a reused id is never hit.
    """

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self._running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=PROJECT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        self._running[name] = proc
        logger.debug("started %s (pid %d): %s", name, proc.pid, " ".join(cmd))
        return proc

    def exited(self, names: list[str]) -> list[str]:
        return [n for n in names if self._running[n].poll() is not None]

    def stop(self, name: str) -> None:
        proc = self._running.pop(name)
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                logger.warning("%s ignored SIGTERM for %ss; killing it", name, STOP_GRACE_SECONDS)
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=STOP_GRACE_SECONDS)

    def stop_all(self) -> None:
        for name in list(self._running):
            self.stop(name)

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def run_driver(procs: Processes, name: str, args: list[str], timeout: float) -> dict[str, Any]:
    """Run `python -m peerbench.driver ARGS` to completion and return its JSON result."""
    out = procs.log_dir / f"{name}.json"
    proc = procs.start(name, [PYTHON, "-m", "peerbench.driver", "--out", str(out), *args])
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"driver {name} did not finish within {timeout:.0f}s") from exc
    finally:
        procs.stop(name)
    if proc.returncode != 0:
        raise BenchError(f"driver {name} exited {proc.returncode}:\n{procs.log_tail(name)}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def wait_while_workers_run(
    procs: Processes, proc: subprocess.Popen[bytes], workers: list[str], timeout: float
) -> None:
    """Wait for `proc` to exit, failing early if a worker dies meanwhile."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if dead := procs.exited(workers):
            name = dead[0]
            raise BenchError(f"worker {name} exited early:\n{procs.log_tail(name)}")
        if time.monotonic() > deadline:
            raise BenchError(f"gave up after {timeout:.0f}s")
        time.sleep(0.1)


def wait_for_file(path: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise BenchError(f"{proc.args!r} exited {proc.returncode} before getting ready")
        if time.monotonic() > deadline:
            raise BenchError(f"{path.name} did not appear within {timeout:.0f}s")
        time.sleep(0.02)


# --- databases --------------------------------------------------------------------------


def pg_connect(opts: Options) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host=opts.pg_host,
        port=opts.pg_port,
        user=opts.pg_user,
        dbname=opts.pg_admin_db,
        autocommit=True,
        connect_timeout=10,
    )


def drop_pg_database(opts: Options, name: str) -> None:
    with pg_connect(opts) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextmanager
def scenario_database(scenario: Scenario, opts: Options, tmp: Path) -> Iterator[str]:
    """A fresh, empty database for one scenario; yields BENCH_DB_NAME."""
    if scenario.db == "sqlite":
        yield str(tmp / "bench.sqlite3")  # removed with the temporary directory
        return
    name = f"bench_peer_{scenario.key}"
    drop_pg_database(opts, name)  # a leftover from an interrupted run
    with pg_connect(opts) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        drop_pg_database(opts, name)


# --- measurements -----------------------------------------------------------------------


def worker_command(scenario: Scenario, opts: Options) -> list[str]:
    """The peer's own worker command, with its default settings."""
    if scenario.peer == "tasks_db":
        return [PYTHON, "manage.py", "db_worker", "--interval", f"{opts.tasks_db_interval:g}"]
    return [PYTHON, "manage.py", "procrastinate", "worker"]


def worker_settings(scenario: Scenario, opts: Options) -> dict[str, Any]:
    """What the workers ran with, for the report."""
    common: dict[str, Any] = {
        "command": " ".join(["manage.py", *worker_command(scenario, opts)[2:]]),
        "conn_max_age": opts.conn_max_age,
    }
    if scenario.db == "sqlite":
        common["sqlite"] = "WAL, synchronous=NORMAL, transaction_mode=IMMEDIATE, timeout=20"
    if scenario.peer == "tasks_db":
        return {
            **common,
            "poll_interval_s": opts.tasks_db_interval,
            "startup_delay": "default (random 0-1 s before the first poll)",
        }
    return {
        **common,
        "concurrency": 1,
        "listen_notify": True,
        "fetch_job_polling_interval_s": 5.0,
    }


def measure_drain(scenario: Scenario, opts: Options, procs: Processes) -> dict[str, Any]:
    """--drain-runs drains; the headline rates are the median run's, the best is kept too."""
    runs = []
    for run in range(opts.drain_runs):
        if run:
            run_driver(procs, "reset", ["reset"], timeout=60)
        runs.append(drain_once(scenario, opts, procs))
        logger.info("%s: drain run %d: %s", scenario.key, run + 1, runs[-1])
    by_rate = sorted(runs, key=lambda r: r["rate_wall"])
    median = by_rate[(len(by_rate) - 1) // 2]
    return {
        **median,
        "runs": len(runs),
        "rate_wall_best": by_rate[-1]["rate_wall"],
        "rate_wall_all": [r["rate_wall"] for r in runs],
        "rate_active_all": [r.get("rate_active") for r in runs],
    }


def drain_once(scenario: Scenario, opts: Options, procs: Processes) -> dict[str, Any]:
    """Enqueue N no-ops, start the workers, time until all N are finished."""
    enq = run_driver(procs, "enqueue", ["enqueue", "--count", str(opts.tasks)], timeout=300)
    logger.info("%s: enqueued %d tasks in %.1fs", scenario.key, opts.tasks, enq["seconds"])

    for stale in ("waiter.ready", "waiter.json"):
        (procs.log_dir / stale).unlink(missing_ok=True)
    ready = procs.log_dir / "waiter.ready"
    out = procs.log_dir / "waiter.json"
    waiter = procs.start(
        "waiter",
        [PYTHON, "-m", "peerbench.driver", "--out", str(out), "wait-drained",
         "--count", str(opts.tasks), "--timeout", str(opts.drain_timeout),
         "--ready-file", str(ready)],
    )  # fmt: skip
    wait_for_file(ready, waiter, timeout=60)
    quiet = settle(opts)

    names = [f"drain-worker-{i}" for i in range(DRAIN_WORKERS)]
    with ForeignLoad() as load:
        started_at = time.time()
        for name in names:
            procs.start(name, worker_command(scenario, opts))
        try:
            wait_while_workers_run(procs, waiter, names, timeout=opts.drain_timeout + 30)
        finally:
            for name in names:
                procs.stop(name)
            procs.stop("waiter")
    if waiter.returncode != 0:
        raise BenchError(f"drain waiter exited {waiter.returncode}:\n{procs.log_tail('waiter')}")
    summary = drain_summary(json.loads(out.read_text()), started_at, opts)
    return {**summary, "machine_was_quiet": quiet, "foreign_load": load.report()}


def drain_summary(result: dict[str, Any], started_at: float, opts: Options) -> dict[str, Any]:
    if result["timed_out"]:
        raise BenchError(
            f"only {result['finished']}/{opts.tasks} tasks finished in {opts.drain_timeout:.0f}s"
        )
    wall = result["done_at"] - started_at
    summary: dict[str, Any] = {
        "tasks": opts.tasks,
        "workers": DRAIN_WORKERS,
        "failed": result["failed"],
        "wall_seconds": round(wall, 3),
        "rate_wall": round(opts.tasks / wall, 1),
        "poll_resolution_s": 0.05,
    }
    first, last = result["first_started"], result["last_finished"]
    if first is not None and last is not None and last > first:
        summary["active_seconds"] = round(last - first, 3)
        summary["rate_active"] = round(opts.tasks / (last - first), 1)
    return summary


def phase_jitter(scenario: Scenario, opts: Options) -> float:
    """How much of a poll interval to add to the pause between pickup samples.

    django-tasks-db only polls; randomising the enqueue over a whole interval makes
    each sample land at a random point of its sleep loop. procrastinate is woken by
    LISTEN/NOTIFY, so it has no loop phase to randomise.
    """
    return opts.tasks_db_interval if scenario.peer == "tasks_db" else 0.0


def measure_pickup(scenario: Scenario, opts: Options, procs: Processes) -> dict[str, Any]:
    """One idle worker; enqueue one task at a time and time until it starts."""
    run_driver(procs, "reset", ["reset"], timeout=60)
    jitter = phase_jitter(scenario, opts)
    budget = 90 + opts.samples * (0.25 + jitter + 2.0)
    worker = procs.start("pickup-worker", worker_command(scenario, opts))
    try:
        quiet = settle(opts)
        with ForeignLoad() as load:
            result = run_driver(
                procs,
                "latency",
                ["latency", "--samples", str(opts.samples), "--phase-jitter", str(jitter)],
                timeout=budget,
            )
        if procs.exited(["pickup-worker"]):
            raise BenchError(f"pickup worker exited:\n{procs.log_tail('pickup-worker')}")
        time.sleep(2.0)  # idle, as Crucible's idle worker is measured
        idle_rss = rss_mb(worker.pid)
    finally:
        procs.stop("pickup-worker")
    summary = pickup_summary(result, jitter)
    return {**summary, "idle_rss_mb": idle_rss, "machine_was_quiet": quiet,
            "foreign_load": load.report()}


def rss_mb(pid: int) -> float:
    """Resident set size of one process (Linux), in MiB, as `ps` and psutil report it."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise BenchError(f"no VmRSS for process {pid}")


def settle(opts: Options) -> bool:
    """Wait (up to --settle s) for other processes to leave the CPUs alone."""
    if opts.settle <= 0:
        return True
    quiet: bool = wait_until_quiet(opts.settle)
    if not quiet:
        logger.warning("machine still busy after %.0fs; measuring anyway", opts.settle)
    return quiet


def percentile(values: list[float], pct: float) -> float:
    """Linear-interpolated percentile (same as numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * pct / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def pickup_summary(result: dict[str, Any], jitter: float) -> dict[str, Any]:
    latencies: list[float] = result["latencies_ms"]
    if not latencies:
        raise BenchError("no pickup sample completed")
    return {
        "samples": len(latencies),
        "timeouts": result["timeouts"],
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "mean_ms": round(statistics.fmean(latencies), 2),
        "min_ms": round(min(latencies), 2),
        "max_ms": round(max(latencies), 2),
        "enqueue_p50_ms": round(percentile(result["enqueue_ms"], 50), 2),
        "pause_s": f"uniform(0.05, 0.25) + uniform(0, {jitter:g})",
    }


# --- one scenario -----------------------------------------------------------------------


def project_env(scenario: Scenario, db_name: str, tmp: Path, opts: Options) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="peerbench.settings",
        PYTHONPATH=str(PROJECT),
        PYTHONDONTWRITEBYTECODE="1",
        BENCH_PEER=scenario.peer,
        BENCH_DB=scenario.db,
        BENCH_DB_NAME=db_name,
        BENCH_STAMP_FILE=str(tmp / "stamps.txt"),
        BENCH_CONN_MAX_AGE=str(opts.conn_max_age),
        BENCH_PG_HOST=opts.pg_host,
        BENCH_PG_PORT=str(opts.pg_port),
        BENCH_PG_USER=opts.pg_user,
    )
    return env


def migrate(procs: Processes) -> None:
    proc = procs.start("migrate", [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"])
    try:
        proc.wait(timeout=180)
    except subprocess.TimeoutExpired as exc:
        raise BenchError("migrate did not finish within 180s") from exc
    finally:
        procs.stop("migrate")
    if proc.returncode != 0:
        raise BenchError(f"migrate exited {proc.returncode}:\n{procs.log_tail('migrate')}")


def run_scenario(scenario: Scenario, opts: Options) -> dict[str, Any]:
    record: dict[str, Any] = {
        "scenario": scenario.key,
        "label": scenario.label,
        "peer": scenario.peer,
        "database": scenario.db,
        "settings": worker_settings(scenario, opts),
        "drain": None,
        "pickup": None,
        "error": None,
    }
    with (
        tempfile.TemporaryDirectory(prefix=f"bench_peer_{scenario.key}_") as tmp_name,
        scenario_database(scenario, opts, Path(tmp_name)) as db_name,
    ):
        tmp = Path(tmp_name)
        procs = Processes(project_env(scenario, db_name, tmp, opts), tmp)
        try:
            migrate(procs)
            record["drain"] = measure_drain(scenario, opts, procs)
            record["pickup"] = measure_pickup(scenario, opts, procs)
            logger.info("%s: pickup %s", scenario.key, record["pickup"])
        except BenchError as exc:
            logger.error("%s failed: %s", scenario.key, exc)  # noqa: TRY400 - message says it all
            record["error"] = str(exc)
        finally:
            procs.stop_all()
    return record


# --- report -----------------------------------------------------------------------------


def package_versions() -> dict[str, str]:
    names = ("django", "django-tasks-db", "procrastinate", "psycopg", "psycopg-binary",
             "psycopg-pool", "asgiref")  # fmt: skip
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def server_versions(opts: Options, scenarios: list[Scenario]) -> dict[str, str]:
    versions = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    if any(s.db == "pg" for s in scenarios):
        with pg_connect(opts) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            versions["postgresql"] = str(row[0]) if row else "unknown"
    return versions


def fmt(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:,.1f}{suffix}"


def foreign_pct(phase: dict[str, Any]) -> str:
    load = phase.get("foreign_load")
    return "-" if load is None else f"{load['pct_of_one_core']:g}%"


def render_table(results: list[dict[str, Any]]) -> str:
    header = (
        "scenario",
        "drain/s wall",
        "drain/s active",
        "pickup p50",
        "pickup p99",
        "idle RSS",
        "foreign CPU",
        "notes",
    )
    rows = [header]
    for r in results:
        drain, pickup = r["drain"] or {}, r["pickup"] or {}
        if r["peer"] == "tasks_db":
            notes = f"poll interval {r['settings']['poll_interval_s']:g}s"
        else:
            notes = "LISTEN/NOTIFY (poll fallback 5s)"
        if r["error"]:
            notes = f"ERROR: {r['error'].splitlines()[0]}"
        rows.append(
            (
                r["scenario"],
                fmt(drain.get("rate_wall")),
                fmt(drain.get("rate_active")),
                fmt(pickup.get("p50_ms"), " ms"),
                fmt(pickup.get("p99_ms"), " ms"),
                fmt(pickup.get("idle_rss_mb"), " MB"),
                f"{foreign_pct(drain)} / {foreign_pct(pickup)}",
                notes,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("foreign CPU: drain / pickup, other processes' CPU as % of one core (lower bound)")
    return "\n".join(line.rstrip() for line in lines)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


# --- entry point ------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> Options:
    keys = [s.key for s in SCENARIOS]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000, help="no-op tasks to drain")
    parser.add_argument("--samples", type=int, default=200, help="pickup-latency samples")
    parser.add_argument("--only", choices=keys, action="append", help="run only this (repeatable)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument(
        "--tasks-db-interval",
        type=float,
        default=TASKS_DB_DEFAULT_INTERVAL,
        help="db_worker --interval (default: the peer's default, 1s)",
    )
    parser.add_argument(
        "--conn-max-age", type=int, default=0, help="Django CONN_MAX_AGE (default: Django's, 0)"
    )
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    parser.add_argument(
        "--drain-runs", type=int, default=1, help="drain this many times; report the median"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=15.0,
        help="before each measurement, wait up to this long for other processes to go quiet",
    )
    parser.add_argument("--pg-host", default="127.0.0.1")
    parser.add_argument("--pg-port", type=int, default=5432)
    parser.add_argument("--pg-user", default="postgres")
    parser.add_argument("--pg-admin-db", default="postgres", help="database to CREATE/DROP from")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if min(args.tasks, args.samples, args.drain_runs) < 1:
        parser.error("--tasks, --samples and --drain-runs must be positive")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    return Options(
        tasks=args.tasks,
        samples=args.samples,
        only=tuple(args.only or keys),
        json_path=args.json,
        tasks_db_interval=args.tasks_db_interval,
        conn_max_age=args.conn_max_age,
        drain_timeout=args.drain_timeout,
        drain_runs=args.drain_runs,
        settle=args.settle,
        pg_host=args.pg_host,
        pg_port=args.pg_port,
        pg_user=args.pg_user,
        pg_admin_db=args.pg_admin_db,
    )


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the cleanup in run_scenario


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # Ctrl-C must clean up too, even where a shell started us with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    scenarios = [s for s in SCENARIOS if s.key in opts.only]
    started = time.monotonic()
    payload: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": {**package_versions(), **server_versions(opts, scenarios)},
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()},
        "results": [],
    }
    for scenario in scenarios:
        logger.info("=== %s", scenario.label)
        payload["results"].append(run_scenario(scenario, opts))
    payload["total_seconds"] = round(time.monotonic() - started, 1)
    write_json(opts.json_path, payload)
    print(render_table(payload["results"]))
    print(f"\nversions: {payload['versions']}")
    print(f"JSON written to {opts.json_path}")
    return 1 if any(r["error"] for r in payload["results"]) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        logger.warning("interrupted: workers stopped, databases dropped")
        sys.exit(130)

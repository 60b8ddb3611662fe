#!/usr/bin/env python
"""Benchmark Crucible and its peer task queues side by side, through their public APIs.

One command, run with the peers' own venv (Crucible's rows run with the project's venv,
--crucible-python, from the repository root):

    bench/peers/setup.sh
    bench/.venv-peers/bin/python bench/peers/run.py [--tasks N] [--drain-runs R]
        [--samples M] [--only KEY ...] [--crucible-python .venv/bin/python]

Rows: Crucible through Django's `@task` + `.enqueue()` and through plain functions
enqueued as `manage.py enqueue` does (SQLite and PostgreSQL); django-tasks-db (SQLite,
PostgreSQL); procrastinate (PostgreSQL); huey (SqliteHuey via djhuey, `run_huey -k
process -w 2`); django-q2 (ORM broker, SQLite and PostgreSQL, `qcluster`, 2 workers).
Each runs with 2 worker processes and its defaults (the report lists every exception).

First the single-row commit rate of each database is measured (one process, INSERT one
row + COMMIT, for --commit-seconds). Then, for each row, a fresh database is created
and migrated, and:

  drain   --drain-runs times: enqueue N no-op tasks from one process with the public
          enqueue call (the enqueue rate), start the workers, time from their start
          until all N are finished (the drain rate) and until the first one is (start to
          first task done).
  pickup  with the workers started and idle, enqueue a `stamp` task every --interval s
          (open loop); the task stamps time.time() when it starts; latency = start -
          enqueue() return. Then, idle, the RSS and PSS of one worker command and all its
          processes.

Every subprocess has a timeout, every worker is stopped and every database (all named
peers_*) dropped, also on errors. Results: a markdown table on stdout and in
--out-dir (peers.md), a bar chart (peers.png) and the raw figures (peers.json).
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
    import psutil
    import psycopg
    from psycopg import sql
except ImportError:  # pragma: no cover - wrong interpreter
    sys.exit("run.py needs bench/.venv-peers/bin/python (create it with bench/peers/setup.sh)")

from machine import CpuTrail, ForeignLoad, wait_until_quiet
from report import render_chart, render_markdown

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
from bench.core import _env as crucible_core_env  # noqa: E402 - needs ROOT on sys.path

logger = logging.getLogger("bench.peers")

PROJECT = HERE / "project"
DEFAULT_OUT_DIR = ROOT / "bench" / "results"
PYTHON = sys.executable

# django-tasks-db's `db_worker --interval` default (seconds between polls when idle).
TASKS_DB_DEFAULT_INTERVAL = 1.0
WORKER_PROCESSES = 2  # per row: 2 worker commands, or 1 command running 2 workers
STOP_GRACE_SECONDS = 15.0
# bench/core.py's _env sets these away from Crucible's defaults; this benchmark keeps
# Crucible's defaults (INFO logging, the default heartbeat), as a user gets them.
CRUCIBLE_NOT_DEFAULT = ("LOG_LEVEL", "WORKER_HEARTBEAT_INTERVAL")
# What a Crucible task commits: one transaction to enqueue it, one to record its success
# and claim the next task (the worker's success-and-claim).
CRUCIBLE_COMMITS_PER_TASK = 2


class BenchError(RuntimeError):
    """A measurement could not be made; the message says why."""


@dataclass(frozen=True)
class Scenario:
    key: str
    peer: str  # "crucible_task" | "crucible_plain" | "tasks_db" | "procrastinate" | "huey" | "q2"
    db: str  # "sqlite" | "pg"
    label: str

    @property
    def crucible(self) -> bool:
        return self.peer.startswith("crucible")


SCENARIOS = (
    Scenario("crucible_task_sqlite", "crucible_task", "sqlite", "Crucible, SQLite, @task"),
    Scenario("crucible_plain_sqlite", "crucible_plain", "sqlite",
             "Crucible, SQLite, plain functions"),
    Scenario("huey_sqlite", "huey", "sqlite", "huey (SqliteHuey)"),
    Scenario("tasks_db_sqlite", "tasks_db", "sqlite", "django-tasks-db, SQLite"),
    Scenario("q2_sqlite", "q2", "sqlite", "django-q2 (ORM), SQLite"),
    Scenario("crucible_task_pg", "crucible_task", "pg", "Crucible, PostgreSQL, @task"),
    Scenario("crucible_plain_pg", "crucible_plain", "pg",
             "Crucible, PostgreSQL, plain functions"),
    Scenario("procrastinate_pg", "procrastinate", "pg", "procrastinate, PostgreSQL"),
    Scenario("tasks_db_pg", "tasks_db", "pg", "django-tasks-db, PostgreSQL"),
    Scenario("q2_pg", "q2", "pg", "django-q2 (ORM), PostgreSQL"),
)  # fmt: skip


@dataclass(frozen=True)
class Options:
    tasks: int
    samples: int
    interval: float
    only: tuple[str, ...]
    out_dir: Path
    crucible_python: Path
    tasks_db_interval: float
    conn_max_age: int
    drain_timeout: float
    drain_runs: int
    commit_seconds: float
    settle: float
    pg_host: str
    pg_port: int
    pg_user: str
    pg_admin_db: str


# --- child processes ------------------------------------------------------------------


class Processes:
    """The child processes of one scenario; `stop_all` ends every one still running.

    Each child gets its own session. Stopping it sends SIGTERM to the child alone (a
    worker command stops its own processes, as under a process manager); if it has not
    exited after STOP_GRACE_SECONDS, its whole process group gets SIGKILL, by id, while
    the child is alive (so a reused id is never hit). Processes it started that outlive
    it are then killed by psutil, which checks each is still the process it saw.
    """

    def __init__(self, env: dict[str, str], log_dir: Path, python: str, cwd: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.python = python  # the interpreter of this row's project
        self.cwd = cwd  # where its manage.py is
        self._running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("ab")
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=self.cwd,
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

    def pid(self, name: str) -> int:
        return self._running[name].pid

    def exited(self, names: list[str]) -> list[str]:
        return [n for n in names if self._running[n].poll() is not None]

    def stop(self, name: str) -> None:
        proc = self._running.pop(name)
        if proc.poll() is not None:
            return
        try:
            family = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            logger.warning("%s ignored SIGTERM for %ss; killing it", name, STOP_GRACE_SECONDS)
            _signal_group(proc, signal.SIGKILL)
            proc.wait(timeout=STOP_GRACE_SECONDS)
        _, alive = psutil.wait_procs(family, timeout=STOP_GRACE_SECONDS)
        for child in alive:
            logger.warning("%s left process %d running; killing it", name, child.pid)
            with suppress(psutil.NoSuchProcess):
                child.kill()

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
    proc = procs.start(name, [procs.python, "-m", "peerbench.driver", "--out", str(out), *args])
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
def pg_database(opts: Options, name: str) -> Iterator[str]:
    """A fresh PostgreSQL database (every name starts peers_), dropped afterwards."""
    assert name.startswith("peers_"), name
    drop_pg_database(opts, name)  # a leftover from an interrupted run
    with pg_connect(opts) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        drop_pg_database(opts, name)


@contextmanager
def scenario_database(scenario: Scenario, opts: Options, tmp: Path) -> Iterator[str]:
    """A fresh, empty database for one scenario; yields BENCH_DB_NAME."""
    if scenario.db == "sqlite":
        yield str(tmp / "bench.sqlite3")  # removed with the temporary directory
        return
    with pg_database(opts, f"peers_{scenario.key}") as name:
        yield name


def sqlite_commit_rate(path: Path, seconds: float) -> dict[str, Any]:
    """Single-row commits/s of SQLite as Crucible configures it (WAL, synchronous=NORMAL,
    BEGIN IMMEDIATE), from one connection."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
        commits, deadline = 0, time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (v) VALUES (?)", (commits,))
            conn.execute("COMMIT")
            commits += 1
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    return {"commits": commits, "seconds": round(elapsed, 3), "rate": round(commits / elapsed, 1),
            "settings": "WAL, synchronous=NORMAL, BEGIN IMMEDIATE"}


def pg_commit_rate(opts: Options, seconds: float) -> dict[str, Any]:
    """Single-row commits/s of PostgreSQL (server defaults), from one connection."""
    with (
        pg_database(opts, "peers_commit_rate") as name,
        psycopg.connect(host=opts.pg_host, port=opts.pg_port, user=opts.pg_user, dbname=name,
                        connect_timeout=10) as conn,
    ):
        conn.execute("CREATE TABLE t (id bigserial PRIMARY KEY, v bigint)")
        conn.commit()
        commits, deadline = 0, time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            conn.execute("INSERT INTO t (v) VALUES (%s)", (commits,))
            conn.commit()
            commits += 1
        elapsed = time.perf_counter() - started
        row = conn.execute("SHOW synchronous_commit").fetchone()
    return {"commits": commits, "seconds": round(elapsed, 3), "rate": round(commits / elapsed, 1),
            "settings": f"synchronous_commit={row[0] if row else '?'}"}


def commit_rates(opts: Options, scenarios: list[Scenario]) -> dict[str, dict[str, Any]]:
    """Each database's single-row commit rate, measured in this run."""
    rates: dict[str, dict[str, Any]] = {}
    if any(s.db == "sqlite" for s in scenarios):
        with tempfile.TemporaryDirectory(prefix="peers_commit_") as tmp:
            rates["sqlite"] = sqlite_commit_rate(Path(tmp) / "commit.sqlite3",
                                                 opts.commit_seconds)
    if any(s.db == "pg" for s in scenarios):
        rates["pg"] = pg_commit_rate(opts, opts.commit_seconds)
    for db, rate in rates.items():
        logger.info("single-row commit rate, %s: %s commits/s", db, rate["rate"])
    return rates


# --- measurements -----------------------------------------------------------------------


def worker_commands(scenario: Scenario, opts: Options, python: str) -> list[list[str]]:
    """The row's own worker commands, its defaults kept: 2 worker processes in all."""
    manage = [python, "manage.py"]
    if scenario.crucible:
        return [[*manage, "runworker"]] * WORKER_PROCESSES  # as bench/core.py starts it
    if scenario.peer == "tasks_db":
        interval = ["--interval", f"{opts.tasks_db_interval:g}"]
        return [[*manage, "db_worker", *interval]] * WORKER_PROCESSES
    if scenario.peer == "procrastinate":
        return [[*manage, "procrastinate", "worker"]] * WORKER_PROCESSES
    if scenario.peer == "huey":  # one consumer, 2 worker processes
        return [[*manage, "run_huey", "-k", "process", "-w", str(WORKER_PROCESSES)]]
    return [[*manage, "qcluster"]]  # django-q2: one cluster, Q_CLUSTER workers=2


def not_default(scenario: Scenario, opts: Options) -> list[str]:
    """What this row runs with that its users do not get by default."""
    notes = []
    if scenario.db == "sqlite" and scenario.peer in ("tasks_db", "q2"):
        notes.append("SQLite options as Crucible's (WAL, synchronous=NORMAL, IMMEDIATE)")
    if scenario.peer == "tasks_db" and opts.tasks_db_interval != TASKS_DB_DEFAULT_INTERVAL:
        notes.append(f"db_worker --interval {opts.tasks_db_interval:g}")
    if scenario.peer == "huey":
        notes.append("a completion signal appends a line per task (how finished is counted)")

    if opts.conn_max_age and not scenario.crucible:
        notes.append(f"CONN_MAX_AGE={opts.conn_max_age}")
    return notes


def remarks(scenario: Scenario, opts: Options) -> list[str]:
    """What a reader of this row's figures should know about the peer's defaults."""
    if scenario.peer == "q2" and not opts.conn_max_age:
        return ["its ORM broker calls close_old_connections() before each query, so with "
                "Django's default CONN_MAX_AGE=0 each enqueue opens a new database connection"]
    if scenario.peer == "huey":
        return ["SqliteHuey keeps its queue in its own SQLite file with its defaults (WAL, "
                "SQLite's default synchronous=FULL); it stores no result for a task that "
                "returns None"]
    return []


def worker_settings(scenario: Scenario, opts: Options) -> dict[str, Any]:
    """What the workers ran with, for the report."""
    commands = worker_commands(scenario, opts, "python")
    common: dict[str, Any] = {
        "commands": [" ".join(cmd[1:]) for cmd in commands],
        "not_default": not_default(scenario, opts),
        "remarks": remarks(scenario, opts),
    }
    if scenario.crucible:
        return {
            **common,
            "logging": "INFO (default; LOG_LEVEL not set)",
            "heartbeat": "default (WORKER_HEARTBEAT_INTERVAL not set)",
            "enqueue": "@task .enqueue()" if scenario.peer == "crucible_task"
            else "queue.enqueue(TaskSpec(func_path=...)), as manage.py enqueue",
        }
    common["conn_max_age"] = opts.conn_max_age
    if scenario.db == "sqlite":
        common["sqlite"] = "WAL, synchronous=NORMAL, transaction_mode=IMMEDIATE, timeout=20"
    if scenario.peer == "tasks_db":
        return {
            **common,
            "poll_interval_s": opts.tasks_db_interval,
            "startup_delay": "default (random 0-1 s before the first poll)",
        }
    if scenario.peer == "huey":
        common.pop("sqlite", None)
        return {**common, "storage": "SqliteHuey defaults: WAL, SQLite's default synchronous",
                "consumer": "-k process -w 2; other options default (idle poll backoff "
                            "0.1 s x1.15 up to 10 s)"}
    if scenario.peer == "q2":
        return {**common, "q_cluster": {"workers": 2, "orm": "default"},
                "defaults_kept": "poll 0.2 s, save_limit 250, retry 60 s"}
    return {
        **common,
        "concurrency": 1,
        "listen_notify": True,
        "fetch_job_polling_interval_s": 5.0,
    }


def spread(values: list[float], digits: int = 1) -> dict[str, Any]:
    """Median, lowest and highest of a few runs' figures, and the figures themselves."""
    return {"median": round(statistics.median(values), digits),
            "min": round(min(values), digits), "max": round(max(values), digits),
            "all": [round(v, digits) for v in values]}


def measure_drain(scenario: Scenario, opts: Options, procs: Processes) -> dict[str, Any]:
    """--drain-runs drains: enqueue rate, drain rate and start to first task done of
    each; the row reports the median and range of each."""
    runs = []
    for run in range(opts.drain_runs):
        if run:
            run_driver(procs, "reset", ["reset"], timeout=120)
        runs.append(drain_once(scenario, opts, procs))
        logger.info("%s: drain run %d: %s", scenario.key, run + 1, runs[-1])
    active = [r["rate_active"] for r in runs if "rate_active" in r]
    return {
        "tasks": opts.tasks,
        "worker_processes": WORKER_PROCESSES,
        "enqueue_rate": spread([r["enqueue_rate"] for r in runs]),
        "drain_rate": spread([r["rate_wall"] for r in runs]),
        "rate_active": spread(active) if active else None,
        "first_done_ms": spread([r["first_done_ms"] for r in runs]),
        "cpu_ms_per_task": spread([r["cpu_ms_per_task"] for r in runs], 3),
        "db_cpu_ms_per_task": spread([r["db_cpu_ms_per_task"] for r in runs], 3),
        "failed": sum(r["failed"] for r in runs),
        "runs": runs,
    }


def measure_bulk(opts: Options, procs: Processes) -> dict[str, Any] | None:
    """--drain-runs bulk enqueues of N no-op tasks, each in one public call (a Crucible
    `@task`'s `enqueue_many`, `queue.enqueue_many`, procrastinate's `batch_defer`); None for
    a peer without one."""
    rates = []
    for _ in range(opts.drain_runs):
        run_driver(procs, "reset", ["reset"], timeout=120)
        found = run_driver(procs, "enqueue-bulk", ["enqueue-bulk", "--count", str(opts.tasks)],
                           timeout=max(300.0, opts.tasks / 100))
        if not found["supported"]:
            return None
        rates.append(found["rate"])
    return {"tasks": opts.tasks, "enqueue_rate": spread(rates)}


def drain_once(scenario: Scenario, opts: Options, procs: Processes) -> dict[str, Any]:
    """Enqueue N no-ops (timed), start the workers, time until all N are finished."""
    enq = run_driver(procs, "enqueue", ["enqueue", "--count", str(opts.tasks)],
                     timeout=max(300.0, opts.tasks / 10))
    logger.info("%s: enqueued %d tasks in %.1fs", scenario.key, opts.tasks, enq["seconds"])

    for stale in ("waiter.ready", "waiter.json"):
        (procs.log_dir / stale).unlink(missing_ok=True)
    ready = procs.log_dir / "waiter.ready"
    out = procs.log_dir / "waiter.json"
    waiter = procs.start(
        "waiter",
        [procs.python, "-m", "peerbench.driver", "--out", str(out), "wait-drained",
         "--count", str(opts.tasks), "--timeout", str(opts.drain_timeout),
         "--ready-file", str(ready)],
    )  # fmt: skip
    wait_for_file(ready, waiter, timeout=60)
    quiet = settle(opts)

    commands = worker_commands(scenario, opts, procs.python)
    names = [f"drain-worker-{i}" for i in range(len(commands))]
    with ForeignLoad() as load:
        started_at = time.time()
        for name, cmd in zip(names, commands, strict=True):
            procs.start(name, cmd)
        try:
            with CpuTrail(roots=[procs.pid(name) for name in names]) as trail:
                wait_while_workers_run(procs, waiter, names, timeout=opts.drain_timeout + 30)
        finally:
            for name in names:
                procs.stop(name)
            procs.stop("waiter")
    if waiter.returncode != 0:
        raise BenchError(f"drain waiter exited {waiter.returncode}:\n{procs.log_tail('waiter')}")
    result = json.loads(out.read_text())
    summary = drain_summary(result, started_at, opts)
    return {**summary, **drain_cpu(result, trail, opts), "enqueue_rate": round(enq["rate"], 1),
            "machine_was_quiet": quiet, "foreign_load": load.report()}


def drain_cpu(result: dict[str, Any], trail: CpuTrail, opts: Options) -> dict[str, Any]:
    """CPU milliseconds a task while the tasks ran: the workers' (every process of the
    worker commands) and the database server's. The window is the first task's start to
    the last one's end where the product records them, else from the moment the first
    task was seen finished to the drain's end (which leaves out the workers' start)."""
    start = result["first_started"] or result["first_done_at"]
    end = result["last_finished"] or result["done_at"]
    workers, server = trail.between(start, end)
    return {"cpu_ms_per_task": round(1000 * workers / opts.tasks, 3),
            "db_cpu_ms_per_task": round(1000 * server / opts.tasks, 3),
            "cpu_window": "rows" if result["first_started"] else "seen"}


def drain_summary(result: dict[str, Any], started_at: float, opts: Options) -> dict[str, Any]:
    if result["timed_out"]:
        raise BenchError(
            f"only {result['finished']}/{opts.tasks} tasks finished in {opts.drain_timeout:.0f}s"
        )
    wall = result["done_at"] - started_at
    summary: dict[str, Any] = {
        "failed": result["failed"],
        "wall_seconds": round(wall, 3),
        "rate_wall": round(opts.tasks / wall, 1),
        "first_done_ms": round((result["first_done_at"] - started_at) * 1000, 1),
        "poll_resolution_s": 0.05,
    }
    first, last = result["first_started"], result["last_finished"]
    if first is not None and last is not None and last > first:
        summary["active_seconds"] = round(last - first, 3)
        summary["rate_active"] = round(opts.tasks / (last - first), 1)
    return summary


def measure_pickup(scenario: Scenario, opts: Options, procs: Processes) -> dict[str, Any]:
    """The row's workers, idle; a task every --interval s, each timed until it starts.
    Then, still idle, the memory of one worker command with all its processes."""
    run_driver(procs, "reset", ["reset"], timeout=120)
    budget = 120 + opts.samples * opts.interval
    commands = worker_commands(scenario, opts, procs.python)
    names = [f"pickup-worker-{i}" for i in range(len(commands))]
    for name, cmd in zip(names, commands, strict=True):
        procs.start(name, cmd)
    try:
        quiet = settle(opts)
        with ForeignLoad() as load:
            result = run_driver(
                procs, "latency",
                ["latency", "--samples", str(opts.samples), "--interval", str(opts.interval)],
                timeout=budget,
            )  # fmt: skip
        if dead := procs.exited(names):
            raise BenchError(f"pickup worker exited:\n{procs.log_tail(dead[0])}")
        time.sleep(2.0)  # idle, as Crucible's idle worker is measured
        memory = tree_memory(procs.pid(names[0]))
    finally:
        for name in names:
            procs.stop(name)
    summary = pickup_summary(result, opts.interval)
    return {**summary, "idle_memory": memory, "machine_was_quiet": quiet,
            "foreign_load": load.report()}


def tree_memory(pid: int) -> dict[str, Any]:
    """RSS and PSS (MiB) of a worker command and every process it started, summed (RSS
    counts shared pages once per process; PSS shares them out)."""
    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    rss = pss = 0
    for process in processes:
        info = process.memory_full_info()
        rss += info.rss
        pss += info.pss
    return {"rss_mb": round(rss / 2**20, 1), "pss_mb": round(pss / 2**20, 1),
            "processes": len(processes)}


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


def pickup_summary(result: dict[str, Any], interval: float) -> dict[str, Any]:
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
        "interval_s": interval,
    }


# --- one scenario -----------------------------------------------------------------------


def pg_url(opts: Options, name: str) -> str:
    return f"postgres://{opts.pg_user}@{opts.pg_host}:{opts.pg_port}/{name}"


def crucible_env(scenario: Scenario, db_name: str, tmp: Path, opts: Options) -> dict[str, str]:
    """bench/core.py's environment for Crucible's workers (its own database, log and
    doorbell folders), less the settings it moves off Crucible's defaults."""
    url = f"sqlite:///{db_name}" if scenario.db == "sqlite" else pg_url(opts, db_name)
    env = {k: v for k, v in crucible_core_env(url, tmp).items() if not k.startswith("BENCH_")}
    for name in CRUCIBLE_NOT_DEFAULT:
        env.pop(name, None)
    env.update(
        PYTHONPATH=str(PROJECT),  # peerbench.driver; the repository is the cwd
        PYTHONDONTWRITEBYTECODE="1",
        BENCH_PEER=scenario.peer,
        BENCH_STAMP_FILE=str(tmp / "stamps.txt"),
    )
    return env


def project_env(scenario: Scenario, db_name: str, tmp: Path, opts: Options) -> dict[str, str]:
    if scenario.crucible:
        return crucible_env(scenario, db_name, tmp, opts)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="peerbench.settings",
        PYTHONPATH=str(PROJECT),
        PYTHONDONTWRITEBYTECODE="1",
        BENCH_PEER=scenario.peer,
        BENCH_DB=scenario.db,
        BENCH_DB_NAME=db_name,
        BENCH_STAMP_FILE=str(tmp / "stamps.txt"),
        BENCH_DONE_FILE=str(tmp / "done.txt"),
        BENCH_HUEY_FILE=str(tmp / "huey.sqlite3"),
        BENCH_CONN_MAX_AGE=str(opts.conn_max_age),
        BENCH_PG_HOST=opts.pg_host,
        BENCH_PG_PORT=str(opts.pg_port),
        BENCH_PG_USER=opts.pg_user,
    )
    return env


def migrate(procs: Processes) -> None:
    cmd = [procs.python, "manage.py", "migrate", "--noinput", "-v", "0"]
    proc = procs.start("migrate", cmd)
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
        "crucible": scenario.crucible,
        "database": scenario.db,
        "settings": worker_settings(scenario, opts),
        "drain": None,
        "bulk": None,
        "pickup": None,
        "error": None,
    }
    python, cwd = (str(opts.crucible_python), ROOT) if scenario.crucible else (PYTHON, PROJECT)
    with (
        tempfile.TemporaryDirectory(prefix=f"peers_{scenario.key}_") as tmp_name,
        scenario_database(scenario, opts, Path(tmp_name)) as db_name,
    ):
        tmp = Path(tmp_name)
        procs = Processes(project_env(scenario, db_name, tmp, opts), tmp, python, cwd)
        try:
            migrate(procs)
            record["drain"] = measure_drain(scenario, opts, procs)
            record["bulk"] = measure_bulk(opts, procs)
            record["pickup"] = measure_pickup(scenario, opts, procs)
            logger.info("%s: pickup %s", scenario.key, record["pickup"])
        except BenchError as exc:
            logger.error("%s failed: %s", scenario.key, exc)  # noqa: TRY400 - message says it all
            record["error"] = str(exc)
        finally:
            procs.stop_all()
    return record


# --- facts ------------------------------------------------------------------------------


def package_versions() -> dict[str, str]:
    names = ("django", "django-tasks-db", "procrastinate", "huey", "django-q2", "psycopg",
             "psycopg-binary", "psycopg-pool", "asgiref")  # fmt: skip
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


CRUCIBLE_VERSIONS = """
import json, platform, sqlite3
from importlib.metadata import version
print(json.dumps({"python": platform.python_version(), "django": version("django"),
                  "psycopg": version("psycopg"), "sqlite": sqlite3.sqlite_version}))
"""


# Crucible runs from its source tree; pip compiled the peers' packages when it installed
# them. Compiled here the same way, its workers do not compile its modules at every start
# where PYTHONDONTWRITEBYTECODE is set (about 60 ms of a start on this machine).
CRUCIBLE_SOURCES = ("config", "workers", "simulations", "bench")


def byte_compile(opts: Options) -> None:
    subprocess.run([str(opts.crucible_python), "-m", "compileall", "-q", *CRUCIBLE_SOURCES],
                   cwd=ROOT, capture_output=True, check=True, timeout=300)


def crucible_versions(opts: Options) -> dict[str, str]:
    """Versions in the project's venv, which runs Crucible's rows."""
    out = subprocess.run([str(opts.crucible_python), "-c", CRUCIBLE_VERSIONS], cwd=ROOT,
                         capture_output=True, text=True, check=True, timeout=60)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True, check=False, timeout=60)
    versions: dict[str, str] = json.loads(out.stdout)
    versions["commit"] = commit.stdout.strip() or "unknown"
    return versions


def server_versions(opts: Options, scenarios: list[Scenario]) -> dict[str, str]:
    versions = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    if any(s.db == "pg" for s in scenarios):
        with pg_connect(opts) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            versions["postgresql"] = str(row[0]) if row else "unknown"
    return versions


def machine_facts() -> dict[str, Any]:
    model = next((line.split(":", 1)[1].strip()
                  for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "unknown")  # fmt: skip
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


# --- entry point ------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> Options:
    keys = [s.key for s in SCENARIOS]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000, help="no-op tasks per drain")
    parser.add_argument(
        "--drain-runs", type=int, default=3, help="drain this many times; report median, range"
    )
    parser.add_argument("--samples", type=int, default=200, help="pickup-latency samples")
    parser.add_argument("--interval", type=float, default=0.05,
                        help="seconds between pickup samples' enqueues")
    parser.add_argument("--only", choices=keys, action="append", help="run only this (repeatable)")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR,
                        help="where peers.md, peers.png and peers.json go")
    parser.add_argument("--crucible-python", type=Path, default=ROOT / ".venv" / "bin" / "python",
                        help="the project's venv interpreter, which runs Crucible's rows")
    parser.add_argument(
        "--tasks-db-interval",
        type=float,
        default=TASKS_DB_DEFAULT_INTERVAL,
        help="db_worker --interval (default: the peer's default, 1s)",
    )
    parser.add_argument(
        "--conn-max-age", type=int, default=0, help="peers' Django CONN_MAX_AGE (default 0)"
    )
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--commit-seconds", type=float, default=2.0,
                        help="how long each database's single-row commit rate is measured")
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
    only = tuple(args.only or keys)
    if any(key.startswith("crucible") for key in only) and not args.crucible_python.exists():
        parser.error(f"no interpreter at {args.crucible_python}: pass --crucible-python "
                     "(the project's .venv/bin/python)")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    return Options(
        tasks=args.tasks,
        samples=args.samples,
        interval=args.interval,
        only=only,
        out_dir=args.out_dir,
        crucible_python=args.crucible_python,
        tasks_db_interval=args.tasks_db_interval,
        conn_max_age=args.conn_max_age,
        drain_timeout=args.drain_timeout,
        drain_runs=args.drain_runs,
        commit_seconds=args.commit_seconds,
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
    versions: dict[str, Any] = {**package_versions(), **server_versions(opts, scenarios)}
    if any(s.crucible for s in scenarios):
        versions["crucible_venv"] = crucible_versions(opts)
        byte_compile(opts)
    payload: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_facts(),
        "versions": versions,
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()},
        "assumptions": {"crucible_commits_per_task": CRUCIBLE_COMMITS_PER_TASK},
        "commit_rates": commit_rates(opts, scenarios),
        "results": [],
    }
    for scenario in scenarios:
        logger.info("=== %s", scenario.label)
        payload["results"].append(run_scenario(scenario, opts))
    payload["total_seconds"] = round(time.monotonic() - started, 1)
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    write_json(opts.out_dir / "peers.json", payload)
    table = render_markdown(payload)
    (opts.out_dir / "peers.md").write_text(table)
    render_chart(payload, opts.out_dir / "peers.png")
    print(table)
    written = (opts.out_dir / name for name in ("peers.md", "peers.png", "peers.json"))
    print("Written:", ", ".join(str(path) for path in written))
    return 1 if any(r["error"] for r in payload["results"]) else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        logger.warning("interrupted: workers stopped, databases dropped")
        sys.exit(130)

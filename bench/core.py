"""Crucible's own figures: pickup latency, no-op drain rate, start-up time, idle memory.

    .venv/bin/python bench/core.py [--db sqlite|postgres|both] [--tasks 2000] [--samples 200]

Each run uses a throwaway database (a SQLite file, or a `bench_crucible` PostgreSQL
database) and real `manage.py runworker` processes, exactly as in production.

Pickup is timed from just before the `enqueue()` call to the task body's first line: what a
caller waits for. (Until 2026-12-01 the clock started when `enqueue()` returned, which
credited an enqueue that woke the worker before it returned; figures in bench/README.md
before that date are on that clock.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
PG_BENCH = "postgres://postgres@127.0.0.1:5432/bench_crucible"
POLL = 0.05  # how often the drain's end is looked for: the peer harness's resolution


def _env(db_url: str, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=db_url,
        WORKER_LOG_DIR=str(workdir / "logs"),
        WORKER_DOORBELL_DIR=str(workdir / "bell"),
        WORKER_HEARTBEAT_INTERVAL="30",
        LOG_LEVEL="WARNING",
    )
    return env


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, timeout=300)


def _worker(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "manage.py", "runworker", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@contextmanager
def database(kind: str, name: str = "bench_crucible",
             prefix: str = "crb-") -> Iterator[tuple[str, Path]]:
    """A fresh, migrated database of ``kind`` (PostgreSQL's named ``name``) and a work
    folder, both removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'bench.sqlite3'}"
    else:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}")
        url = PG_BENCH.rsplit("/", 1)[0] + f"/{name}"
    try:
        _manage(_env(url, workdir), "migrate", "--noinput")
        yield url, workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if kind == "postgres":
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _django(url: str, workdir: Path) -> None:
    """Set up Django in this process against the benchmark database."""
    os.environ.update(_env(url, workdir))
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _enqueue_many(n: int) -> None:
    from django.db import transaction

    from workers import queue
    from workers.spec import TaskSpec

    with transaction.atomic():
        for _ in range(n):
            queue.enqueue(TaskSpec(func_path="bench.tasks.noop"))


def _count(state: str) -> int:
    from workers.models import Task

    return Task.objects.filter(state=state).count()


def drain_rate(env: dict[str, str], tasks: int, workers: int) -> dict[str, float]:
    from workers.models import Task

    Task.objects.all().delete()
    _enqueue_many(tasks)
    started = time.perf_counter()
    procs = [_worker(env, "--batch") for _ in range(workers)]
    while _count("SUCCEEDED") < tasks:
        time.sleep(POLL)
    wall = time.perf_counter() - started
    for proc in procs:
        proc.wait(timeout=60)
    return {"tasks": tasks, "workers": workers, "seconds": wall, "rate": tasks / wall,
            "rate_active": tasks / _active_seconds()}


def _active_seconds() -> float:
    """From the first task's start to the last one's end, as the peer harness counts it."""
    from django.db.models import Max, Min

    from workers.models import Task

    span = Task.objects.aggregate(first=Min("started_at"), last=Max("finished_at"))
    return float((span["last"] - span["first"]).total_seconds())


def _wait_running(expected: int) -> None:
    from workers.models import Worker

    while Worker.objects.filter(state="RUNNING").count() < expected:
        time.sleep(0.005)


def pickup_latency(env: dict[str, str], samples: int) -> dict[str, float]:
    from workers import queue
    from workers.models import Task, Worker
    from workers.spec import TaskSpec

    Worker.objects.all().delete()
    proc = _worker(env)
    try:
        _wait_running(1)
        time.sleep(1.0)
        latencies = []
        for _ in range(samples):
            enqueued = time.time()  # from the call: a wake-up sent before it returns counts
            task = queue.enqueue(TaskSpec(func_path="bench.tasks.stamp"))
            while (row := Task.objects.filter(pk=task.pk, state="SUCCEEDED").first()) is None:
                time.sleep(0.001)
            latencies.append((row.result - enqueued) * 1000)
            time.sleep(random.uniform(0.02, 0.05))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    latencies.sort()
    return {
        "samples": samples,
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def startup_and_memory(env: dict[str, str], runs: int = 5) -> dict[str, float]:
    import psutil

    from workers.models import Worker

    times = []
    memory: dict[str, float] = {}
    for run in range(runs):
        Worker.objects.all().delete()
        started = time.perf_counter()
        proc = _worker(env)
        _wait_running(1)
        times.append((time.perf_counter() - started) * 1000)
        if run == runs - 1:
            time.sleep(2.0)
            memory = _idle_memory(psutil.Process(proc.pid))
        proc.terminate()
        proc.wait(timeout=30)
    return {"start_to_running_ms_median": statistics.median(times), **memory}


def _idle_memory(supervisor: Any) -> dict[str, float]:
    """The worker's processes at rest: supervisor, executor and (where there is one) the
    sentinel, told apart by their command lines (before it was forked) or names."""
    children = supervisor.children()
    sentinels = [c for c in children if c.name() == "sentinel"
                 or any("sentinel.py" in part for part in c.cmdline())]
    executor = next(c for c in children if c not in sentinels)
    parts = {"supervisor": supervisor, "executor": executor}
    if sentinels:
        parts["sentinel"] = sentinels[0]
    memory: dict[str, float] = {}
    for name, process in parts.items():
        info = process.memory_full_info()
        memory[f"{name}_rss_mb"] = info.rss / 2**20
        memory[f"{name}_pss_mb"] = info.pss / 2**20
        memory["worker_uss_mb"] = memory.get("worker_uss_mb", 0.0) + info.uss / 2**20
    memory["worker_pss_mb"] = sum(memory[f"{name}_pss_mb"] for name in parts)
    return memory


def median_drain(env: dict[str, str], tasks: int, runs: int) -> dict[str, Any]:
    rates = [drain_rate(env, tasks, workers=2) for _ in range(runs)]
    rates.sort(key=lambda r: r["rate"])
    middle = rates[len(rates) // 2]
    return {**middle, "runs": [round(r["rate"], 1) for r in rates]}


def run(kind: str, tasks: int, samples: int, drain_runs: int = 3) -> dict[str, Any]:
    with database(kind) as (url, workdir):
        _django(url, workdir)
        env = _env(url, workdir)
        result = {
            "database": kind,
            "startup": startup_and_memory(env),
            "pickup": pickup_latency(env, samples),
            "drain": median_drain(env, tasks, drain_runs),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], required=True)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--drain-runs", type=int, default=3, help="report the median")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    emit(run(args.db, args.tasks, args.samples, args.drain_runs), args.json)


def emit(result: dict[str, Any], path: Path | None) -> None:
    """Print the figures, and keep them as JSON when asked."""
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        path.write_text(text)


if __name__ == "__main__":
    main()

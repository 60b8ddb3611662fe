"""Runs of dependent tasks (#11): submission, claim cost, drain rate, fan-out.

    .venv/bin/python bench/runs.py --db sqlite|postgres [--tasks 10000] [--drain 5000]
                                   [--drain-runs 3] [--json FILE]

Targets (issue 11): a 10,000-task wide random DAG is submitted in under 5 s and its
per-claim time at the end is within 1.5x the start; a run of 5,000 independent no-op
tasks drains within 15 % of the same tasks enqueued without a run; one predecessor's
10,000 dependents are released by a fixed number of statements, not one per dependent.

A throwaway database of its own (a SQLite file, or ``bench_runs`` on PostgreSQL); the
drain uses real ``manage.py runworker --batch`` processes (2), as ``bench/core.py`` does.
Claim and fan-out are timed in this process, calling the queue as a worker does.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.core import _django, _env, _worker, emit
from bench.core import database as core_database

NOOP = "bench.tasks.noop"
WINDOW = 500  # claims at the start and at the end compared


def database(kind: str) -> AbstractContextManager[tuple[str, Path]]:
    """``bench/core.py``'s fresh database, under a name of its own (both may run at once)."""
    return core_database(kind, name="bench_runs", prefix="crb-runs-")


def wide_dag(n: int, seed: int = 11) -> dict[str, Any]:
    """``n`` no-op tasks; each after 0-3 random tasks among the 1,000 before it."""
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        before = rng.sample(range(max(0, i - 1000), i), min(i, rng.randint(0, 3)))
        tasks.append({"name": f"t{i}", "task": NOOP, "depends_on": [f"t{j}" for j in before]})
    return {"name": "wide", "tasks": tasks}


def _clear() -> None:
    from workers.models import Run, Task

    Task.objects.all().delete()
    Run.objects.all().delete()


def submission(n: int) -> dict[str, float]:
    from workers import runs

    _clear()
    document = wide_dag(n)
    started = time.perf_counter()
    runs.submit(document)
    return {"tasks": n, "seconds": round(time.perf_counter() - started, 3)}


def claim_cost() -> dict[str, Any]:
    """Drain the submitted DAG in this process, timing each claim (and each success)."""
    from workers import queue
    from workers.models import Worker
    from workers.queue import Ending
    from workers.states import Outcome

    worker = Worker.objects.create(node="bench", state="RUNNING")
    claims: list[float] = []
    successes: list[float] = []
    while True:
        started = time.perf_counter()
        claimed = queue.claim_next(worker.pk, ["default"])
        claims.append(time.perf_counter() - started)
        if claimed is None:
            break
        started = time.perf_counter()
        queue.succeed(claimed, None, Ending(Outcome.SUCCEEDED))
        successes.append(time.perf_counter() - started)
    claims.pop()  # the last, empty claim
    start, end = statistics.median(claims[:WINDOW]), statistics.median(claims[-WINDOW:])
    return {"claims": len(claims), "start_ms": round(start * 1000, 3),
            "end_ms": round(end * 1000, 3), "end_over_start": round(end / start, 2),
            "success_median_ms": round(statistics.median(successes) * 1000, 3)}


def _enqueue_plain(n: int) -> None:
    from django.db import transaction

    from workers import queue
    from workers.spec import TaskSpec

    with transaction.atomic():
        for _ in range(n):
            queue.enqueue(TaskSpec(func_path=NOOP))


def _enqueue_run(n: int) -> None:
    from workers import runs

    runs.submit({"name": "flat", "tasks": [{"name": f"t{i}", "task": NOOP} for i in range(n)]})


def _drain(env: dict[str, str], n: int, as_run: bool) -> tuple[float, float]:
    """Tasks a second: over the wall time from starting the workers, and over the active
    span (first task's start to last task's end, as bench/core.py counts it)."""
    from django.db.models import Max, Min

    from workers.models import Task

    _clear()
    (_enqueue_run if as_run else _enqueue_plain)(n)
    started = time.perf_counter()
    procs = [_worker(env, "--batch") for _ in range(2)]
    while Task.objects.filter(state="SUCCEEDED").count() < n:
        time.sleep(0.05)
    wall = time.perf_counter() - started
    for proc in procs:
        proc.wait(timeout=60)
    span = Task.objects.aggregate(first=Min("started_at"), last=Max("finished_at"))
    return n / wall, n / (span["last"] - span["first"]).total_seconds()


def drain(env: dict[str, str], n: int, runs_each: int) -> dict[str, Any]:
    """Alternate plain and run drains; compare their medians."""
    plain, in_run = [], []
    for _ in range(runs_each):
        plain.append(_drain(env, n, as_run=False))
        in_run.append(_drain(env, n, as_run=True))
    result: dict[str, Any] = {"tasks": n, "workers": 2}
    for index, kind in enumerate(("wall", "active")):
        mp = statistics.median(rate[index] for rate in plain)
        mr = statistics.median(rate[index] for rate in in_run)
        result[kind] = {"plain_per_s": [round(r[index]) for r in plain],
                        "run_per_s": [round(r[index]) for r in in_run],
                        "plain_median": round(mp), "run_median": round(mr),
                        "run_over_plain": round(mr / mp, 3)}
    return result


def fan_out(n: int) -> dict[str, Any]:
    """One predecessor, ``n`` dependents: statements and time of its success."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from workers import queue, runs
    from workers.models import Task, Worker
    from workers.queue import Ending
    from workers.states import Outcome

    _clear()
    runs.submit({"name": "fan", "tasks": [{"name": "root", "task": NOOP}, *(
        {"name": f"d{i}", "task": NOOP, "depends_on": ["root"]} for i in range(n))]})
    worker = Worker.objects.create(node="bench-fan", state="RUNNING")
    claimed = queue.claim_next(worker.pk, ["default"])
    assert claimed is not None
    with CaptureQueriesContext(connection) as captured:
        started = time.perf_counter()
        queue.succeed(claimed, None, Ending(Outcome.SUCCEEDED))
        seconds = time.perf_counter() - started
    queued = Task.objects.filter(state="QUEUED").count()
    updates = [q["sql"][:60] for q in captured.captured_queries
               if q["sql"].lstrip().upper().startswith("UPDATE")]
    return {"dependents": n, "queued": queued, "statements": len(captured.captured_queries),
            "updates": len(updates), "seconds": round(seconds, 3)}


def run(kind: str, tasks: int, drained: int, drain_runs: int) -> dict[str, Any]:
    with database(kind) as (url, workdir):
        _django(url, workdir)
        env = _env(url, workdir)
        result: dict[str, Any] = {"database": kind}
        result["submission"] = submission(tasks)
        result["claim"] = claim_cost()
        result["fan_out"] = fan_out(tasks)
        result["drain"] = drain(env, drained, drain_runs)
        result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], required=True)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--drain", type=int, default=5_000)
    parser.add_argument("--drain-runs", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    emit(run(args.db, args.tasks, args.drain, args.drain_runs), args.json)


if __name__ == "__main__":
    main()

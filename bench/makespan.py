"""Scheduling by memory against a plain pool by count: makespan and memory over budget.

    .venv/bin/python bench/makespan.py [--db sqlite|postgres] [--tasks 40] [--workers 4]

``--tasks`` calls of ``bench.tasks.hold(mb, seconds)``, 200-1,500 MB held (every page
written) by a task of 1-3 s (writing the memory is part of its seconds, so the bound's
seconds are the tasks'), each declaring what it holds plus its executor's own 100 MB. Run twice
on the same database kind with 4 ``runworker --batch`` processes: once on a 4,096 MB node
budget (``WORKER_NODE_MEMORY_MB=4096``), once as a plain pool by count (a budget no
running set of them reaches). Both give the node 4 CPUs (``WORKER_NODE_CPUS=4``; the
default, the core count, would let only 2 of them run on a 2-core machine).

Every 100 ms the benchmark adds up the resident memory of the process trees of the
executors running a task. Reported per mode: the makespan (first start to last end, from
the task rows), the lower bound (the declared memory-seconds over the budget, or the
longest task if longer), their ratio, the most measured at once, and the share of samples
above the budget.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.core import _django, _env, _worker, database

FUNC = "bench.tasks.hold"
BUDGET_MB = 4096
EXECUTOR_MB = 100  # what an executor holds of its own, declared on top of the allocation
MB = 1024 * 1024


def workload(tasks: int) -> list[tuple[int, float]]:
    rng = random.Random(40)
    return [(rng.randrange(200, 1501), round(rng.uniform(1.0, 3.0), 2)) for _ in range(tasks)]


def lower_bound(calls: list[tuple[int, float]]) -> float:
    """The issue's bound: the declared memory-seconds over the budget, or the longest task."""
    memory_seconds = sum((mb + EXECUTOR_MB) * seconds for mb, seconds in calls)
    return max(memory_seconds / BUDGET_MB, *(seconds for _, seconds in calls))


def workers_bound(calls: list[tuple[int, float]], workers: int) -> float:
    """What ``workers`` workers need at least, whatever the memory: the seconds over them."""
    return sum(seconds for _, seconds in calls) / workers


def _tree_rss(pid: int) -> int:
    """The resident memory of a worker's executor and everything it started."""
    total = 0
    try:
        for child in psutil.Process(pid).children():
            if "sentinel" in " ".join(child.cmdline()):
                continue
            for process in [child, *child.children(recursive=True)]:
                total += process.memory_info().rss
    except psutil.Error:
        return 0
    return total


class Sampler(threading.Thread):
    """Adds up, every 100 ms, what the executors running a task hold."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        from django.db import connection

        from workers.models import Task

        try:
            while not self.stop.wait(0.1):
                pids = Task.objects.filter(state="RUNNING").values_list("worker__pid", flat=True)
                self.samples.append(sum(_tree_rss(pid) for pid in pids if pid))
        finally:
            connection.close()


def run_mode(url: str, workdir: Path, calls: list[tuple[int, float]], workers: int,
             budget_mb: int) -> dict[str, Any]:
    from django.db.models import Max, Min

    from workers import queue
    from workers.models import Task
    from workers.spec import TaskSpec

    Task.objects.all().delete()
    for mb, seconds in calls:
        queue.enqueue(TaskSpec(func_path=FUNC, kwargs={"mb": mb, "seconds": seconds},
                               memory_mb=mb + EXECUTOR_MB))
    env = {**_env(url, workdir), "WORKER_NODE_MEMORY_MB": str(budget_mb),
           "WORKER_NODE_CPUS": "4"}
    sampler = Sampler()
    sampler.start()
    procs = [_worker(env, "--batch") for _ in range(workers)]
    for proc in procs:
        proc.wait(timeout=600)
    sampler.stop.set()
    sampler.join(10)
    done = Task.objects.filter(state="SUCCEEDED").count()
    span = Task.objects.aggregate(first=Min("started_at"), last=Max("finished_at"))
    makespan = (span["last"] - span["first"]).total_seconds()
    over = [s for s in sampler.samples if s > BUDGET_MB * MB]
    bound = lower_bound(calls)
    runs = [(row.finished_at - row.started_at).total_seconds() - seconds
            for row, (_, seconds) in zip(Task.objects.order_by("id"), calls, strict=True)
            if row.finished_at and row.started_at]
    return {
        "node_budget_mb": budget_mb, "succeeded": done, "makespan_s": round(makespan, 2),
        "lower_bound_s": round(bound, 2), "ratio": round(makespan / bound, 3),
        "workers_bound_s": round(workers_bound(calls, workers), 2),
        "ratio_to_workers_bound": round(makespan / workers_bound(calls, workers), 3),
        "task_overhead_s_median": round(statistics.median(runs), 2),
        "most_measured_mb": round(max(sampler.samples, default=0) / MB),
        "samples": len(sampler.samples), "samples_over_budget": len(over),
        "share_over_budget": round(len(over) / max(len(sampler.samples), 1), 3),
    }


def measure(kind: str, tasks: int, workers: int) -> dict[str, Any]:
    calls = workload(tasks)
    with database(kind, name="bench_makespan", prefix="crms-") as (url, workdir):
        _django(url, workdir)
        scheduled = run_mode(url, workdir, calls, workers, BUDGET_MB)
        plain = run_mode(url, workdir, calls, workers, 1_000_000)
    return {
        "db": kind, "tasks": tasks, "workers": workers, "budget_mb": BUDGET_MB,
        "by_memory": scheduled, "by_count": plain, "load": os.getloadavg()[0],
        "at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    print(json.dumps(measure(args.db, args.tasks, args.workers), indent=2))


if __name__ == "__main__":
    main()

"""What replacing the executor after a task costs: one worker drains the same tasks with its
executor kept (the default) and replaced after every task (WORKER_EXECUTOR_MAX_RSS_MB=1),
in alternating runs; the difference of the medians, per task, is the cost.

    .venv/bin/python bench/executor_replace.py [--db sqlite|postgres] [--tasks 300] [--runs 3]

Two task bodies: a no-op, and one that uses numpy (a replaced executor imports it again,
as a real simulation's would). Reports the load average and this machine's other
processes' CPU share during the runs, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.core import _django, _env, _worker, database

BODIES = {"noop": "bench.tasks.noop", "numpy": "bench.tasks.numpy_sum"}


def drain(env: dict[str, str], func_path: str, tasks: int) -> float:
    """Seconds one worker takes to run ``tasks`` calls of ``func_path``, from the first
    task's start to the last one's end (worker start-up left out)."""
    from django.db import transaction
    from django.db.models import Max, Min

    from workers import queue
    from workers.models import Task
    from workers.spec import TaskSpec

    Task.objects.all().delete()
    with transaction.atomic():
        for _ in range(tasks):
            queue.enqueue(TaskSpec(func_path=func_path, memory_mb=100))
    proc = _worker(env, "--batch")
    proc.wait(timeout=600)
    assert Task.objects.filter(state="SUCCEEDED").count() == tasks, "every task succeeded"
    span = Task.objects.aggregate(first=Min("started_at"), last=Max("finished_at"))
    return float((span["last"] - span["first"]).total_seconds())


def others_cpu(seconds: float) -> float:
    """Percent of one core used by processes other than this benchmark's, over ``seconds``."""
    mine = {os.getpid(), *(child.pid for child in psutil.Process().children(recursive=True))}
    before = psutil.cpu_times()
    own = _own_cpu(mine)
    time.sleep(seconds)
    after = psutil.cpu_times()
    busy = (after.user + after.system) - (before.user + before.system)
    return 100 * max(0.0, busy - (_own_cpu(mine) - own)) / seconds


def _own_cpu(pids: set[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def measure(kind: str, tasks: int, runs: int) -> dict[str, Any]:
    with database(kind) as (url, workdir):
        _django(url, workdir)
        keep = _env(url, workdir)
        replace = {**keep, "WORKER_EXECUTOR_MAX_RSS_MB": "1"}
        result: dict[str, Any] = {"db": kind, "tasks": tasks, "runs": runs,
                                  "load_before": os.getloadavg()[0],
                                  "others_cpu_percent_before": others_cpu(3.0)}
        for body, func_path in BODIES.items():
            kept, replaced = [], []
            for _ in range(runs):
                kept.append(drain(keep, func_path, tasks))
                replaced.append(drain(replace, func_path, tasks))
            cost = (statistics.median(replaced) - statistics.median(kept)) / tasks
            result[body] = {
                "kept_s": kept, "replaced_s": replaced,
                "per_task_kept_ms": 1000 * statistics.median(kept) / tasks,
                "per_task_replaced_ms": 1000 * statistics.median(replaced) / tasks,
                "replacement_cost_ms": 1000 * cost,
            }
        result["load_after"] = os.getloadavg()[0]
        result["at"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(measure(args.db, args.tasks, args.runs), indent=2))


if __name__ == "__main__":
    main()

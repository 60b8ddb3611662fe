"""How close learned memory estimates come to what tasks use: slack and limit kills.

    .venv/bin/python bench/learned_slack.py [--db sqlite|postgres] [--tasks 20] [--workers 2]

One task function, ``bench.tasks.allocate(mb, seconds, noise)``, whose memory grows with
``mb`` (its named scale) and varies by +-10 % from run to run. Six runs warm it up; then
``--tasks`` more are submitted, each with the learned estimate as its memory limit, so a
too-small estimate is a real limit kill. Reported: each measured task's slack,
(estimate - peak) / estimate, on its first attempt, and the number of limit kills.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.core import _django, _env, _worker, database

FUNC = "bench.tasks.allocate"
WARM_UP = [200, 400, 800, 300, 600, 1000]
MB = 1024 * 1024


def _submit(mb: int, noise: float, *, limit: bool) -> int:
    from workers import queue
    from workers.pool import estimates
    from workers.spec import TaskSpec

    kwargs = {"mb": mb, "seconds": 1.0, "noise": noise}
    guess = estimates.estimate(FUNC, kwargs, None)
    spec = TaskSpec(func_path=FUNC, kwargs=kwargs, max_attempts=3,
                    memory_limit_mb=guess.mb if limit else None)
    return queue.enqueue(spec).pk


def _wait(ids: list[int], timeout: float = 600.0) -> None:
    from workers.models import Task

    deadline = time.monotonic() + timeout
    while Task.objects.filter(pk__in=ids, state__in=["QUEUED", "RUNNING"]).exists():
        if time.monotonic() > deadline:
            raise TimeoutError("tasks did not finish")
        time.sleep(0.2)


def _learned(timeout: float = 60.0) -> None:
    from workers.pool import estimates

    deadline = time.monotonic() + timeout
    while estimates.estimate(FUNC, {"mb": 500}, None).source != estimates.LEARNED:
        if time.monotonic() > deadline:
            raise TimeoutError("no learned estimate")
        time.sleep(0.2)


def _slack(estimate_mb: int | None, peak: int | None) -> float | None:
    if not estimate_mb or not peak:
        return None
    return (estimate_mb - peak / MB) / estimate_mb


def measure(kind: str, tasks: int, workers: int) -> dict[str, Any]:
    rng = random.Random(10)
    with database(kind) as (url, workdir):
        _django(url, workdir)
        from workers.models import TaskAttempt
        from workers.pool import learning

        learning.scale_by(FUNC, lambda kwargs: float(kwargs["mb"]))
        procs = [_worker(_env(url, workdir)) for _ in range(workers)]
        try:
            warm = [_submit(mb, rng.uniform(-0.1, 0.1), limit=False) for mb in WARM_UP]
            _wait(warm)
            _learned()
            ids = [_submit(rng.randrange(200, 1500), rng.uniform(-0.1, 0.1), limit=True)
                   for _ in range(tasks)]
            _wait(ids)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=60)
        firsts = TaskAttempt.objects.filter(task_id__in=ids, number=1)
        found = [_slack(a.memory_estimate_mb, a.peak_rss_bytes)
                 for a in firsts if a.outcome == "SUCCEEDED"]
        slack = [value for value in found if value is not None]
        kills = TaskAttempt.objects.filter(task_id__in=ids, outcome="MEMORY_LIMIT").count()
        return {
            "db": kind, "tasks": tasks, "workers": workers, "warm_up_runs": len(WARM_UP),
            "slack_median": statistics.median(slack), "slack_mean": statistics.mean(slack),
            "slack_max": max(slack), "slack_min": min(slack), "measured": len(slack),
            "limit_kills": kills, "load": os.getloadavg()[0],
            "at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(measure(args.db, args.tasks, args.workers), indent=2))


if __name__ == "__main__":
    main()

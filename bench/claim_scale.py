"""What a claim costs with 1,000 tasks queued and with 1,000,000 (issue 12: within 1.5x).

    .venv/bin/python bench/claim_scale.py --db sqlite|postgres [--claims 300] [--json F]

One throwaway database: 1,000 no-op tasks are queued and a worker's claims are timed
in-process, through ``queue.claim_next`` as a worker calls it (each claimed task is then
marked finished, so the node's running tasks stay few); then 999,000 more are queued and
the same number of claims is timed again. The tasks are written with one INSERT ... SELECT
each, as ``bench/big_tables.py`` writes its rows, then analysed and, on PostgreSQL,
checkpointed: the claims are timed in a steady state, not while the server writes out the
pages the fill dirtied (which at a million rows exceed the default 128 MB of
``shared_buffers``, and which its checkpointer writes within ``checkpoint_timeout`` anyway).
Each timing follows WARM_UP untimed claims.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.big_tables import analyze, is_pg, series_select, sql  # noqa: E402
from bench.core import emit  # noqa: E402
from bench.harness import Database  # noqa: E402

PLACE = Database("crucible_bench_claims", Path(tempfile.gettempdir()) / "crucible_claims.sqlite3")
SIZES = (1_000, 1_000_000)
WARM_UP = 50


def queue_tasks(first: int, last: int) -> None:
    """Tasks ``first``..``last`` (numbers, not ids): QUEUED no-op calls on the default queue."""
    now = "now()" if is_pg() else "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now')"
    jsonb = "::jsonb" if is_pg() else ""
    false = "false" if is_pg() else "0"
    sql("INSERT INTO workers_task (func_path, args, kwargs, queue, priority, state,"
        " max_attempts, attempt, attempt_base, timeout, created_at, progress_message, error,"
        " crash_count, pending_dependencies, has_dependents, name)"
        f" SELECT 'bench.tasks.noop', '[]'{jsonb}, '{{}}'{jsonb}, 'default', 0, 'QUEUED', 3, 0,"
        f" 0, 3600.0, {now}, '', '', 0, 0, {false}, '' FROM ({series_select(first, last)}) AS s")


def time_claims(worker_id: int, claims: int) -> dict[str, Any]:
    from workers import queue
    from workers.models import Task

    times = []
    for number in range(WARM_UP + claims):
        started = time.perf_counter()
        claimed = queue.claim_next(worker_id, ["default"])
        if number >= WARM_UP:
            times.append((time.perf_counter() - started) * 1000)
        assert claimed is not None, "the queue ran dry"
        Task.objects.filter(pk=claimed.id).update(state="SUCCEEDED")  # keep few running
    return {"claims": claims, "median_ms": round(statistics.median(times), 3),
            "p90_ms": round(sorted(times)[int(claims * 0.9)], 3)}


def run(kind: str, claims: int) -> dict[str, Any]:
    from django.core.management import call_command

    PLACE.create(kind)
    PLACE.setup_django(kind, Path(tempfile.mkdtemp(prefix="crb-claims-")))
    try:
        call_command("migrate", verbosity=0)
        from workers.models import Worker
        from workers.pool import budget

        budget.register("bench-node")
        worker = Worker.objects.create(node="bench-node", state="RUNNING")
        result: dict[str, Any] = {"database": kind}
        queued = 0
        for size in SIZES:
            started = time.perf_counter()
            queue_tasks(queued + 1, size)
            analyze()
            if is_pg():
                sql("CHECKPOINT")
            queued = size
            result[f"queued_{size}"] = {"fill_s": round(time.perf_counter() - started, 1),
                                        **time_claims(worker.pk, claims)}
        low, high = (result[f"queued_{size}"]["median_ms"] for size in SIZES)
        result["ratio"] = round(high / low, 2)
        return result
    finally:
        from django.db import connections

        connections.close_all()
        PLACE.drop(kind)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], required=True)
    parser.add_argument("--claims", type=int, default=300)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    emit(run(args.db, args.claims), args.json)


if __name__ == "__main__":
    main()

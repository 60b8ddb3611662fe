"""More workers than the node's CPUs: drain and enqueue rates while some workers wait.

    .venv/bin/python bench/crowded.py [--db sqlite|postgres] [--tasks 5000] [--runs 3]

What an operator does who starts a worker more than the node has cores ("start anyway"):
each no-op task asks for one CPU, so the extra workers wait while the others run. Public
API and defaults: `@task` no-ops enqueued with `.enqueue()`, real `manage.py runworker`
processes at default settings (INFO logging, default intervals; the node's CPUs are this
machine's). Two measurements, each the median of ``--runs`` runs taken in turn:

- drain: the tasks are enqueued first, then 2, 3 or 4 `runworker --batch` processes drain
  them; the rate, and the CPU time of every worker process per task;
- enqueue: as many workers as the node has CPUs run long tasks (the node is full), and 0
  or 1 more waits; ``--tasks`` no-ops are enqueued one `.enqueue()` call at a time: the
  calls' rate, and the CPU time the workers spent meanwhile;
- enqueue beside idle workers (``--idle``): the same calls while 0, 2 or 6 workers have
  nothing to do and run what arrives. Not at defaults: the node's CPUs are raised to
  IDLE_NODE_CPUS (WORKER_NODE_CPUS), so that on a small machine the extra workers are
  idle rather than waiting for a CPU. An enqueue wakes one idle worker of its queue,
  which passes the wake-up on once it took the task (on PostgreSQL by way of the one
  worker that listens for the machine). ``--gap MS`` spaces the calls MS milliseconds
  apart, so that each task arrives alone (the CPU of the idle workers is then mostly
  their wake-ups), and reports that CPU per task.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.core import POLL, _count, database, emit  # noqa: E402 - after the path is set

DEFAULT_ENV = ("LOG_LEVEL", "WORKER_HEARTBEAT_INTERVAL")  # bench.core's: not users' defaults
IDLE_NODE_CPUS = 16  # not the default (this machine's CPUs): so that idle workers are idle


def _default_env(url: str, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("WORKER_") and k not in DEFAULT_ENV}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", DATABASE_URL=url,
               WORKER_LOG_DIR=str(workdir / "logs"), WORKER_DOORBELL_DIR=str(workdir / "bell"))
    return env


def _setup(env: dict[str, str]) -> None:
    """Django in this process, at the workers' settings: it enqueues as users do."""
    os.environ.update(env)
    import django

    django.setup()


def _enqueue(n: int, gap: float = 0.0) -> None:
    """``n`` calls, each ``gap`` seconds after the last began (at once when late)."""
    from bench.peer_tasks import noop

    started = time.perf_counter()
    for i in range(n):
        noop.enqueue()
        if gap:
            time.sleep(max(0.0, started + (i + 1) * gap - time.perf_counter()))


def _cpu_seconds(tree: dict[int, float], proc: subprocess.Popen[bytes]) -> None:
    """Record the CPU time so far of a worker and each of its processes."""
    try:
        parent = psutil.Process(proc.pid)
        for member in [parent, *parent.children(recursive=True)]:
            times = member.cpu_times()
            tree[member.pid] = times.user + times.system
    except psutil.Error:
        pass  # it ended: its last reading stands


def drain(env: dict[str, str], tasks: int, workers: int) -> dict[str, float]:
    from workers.models import Task

    Task.objects.all().delete()
    _enqueue(tasks)
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "manage.py", "runworker", "--batch"], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(workers)]
    cpu: dict[int, float] = {}
    while _count("SUCCEEDED") < tasks:
        for proc in procs:
            _cpu_seconds(cpu, proc)
        time.sleep(POLL)
    wall = time.perf_counter() - started
    for proc in procs:
        _cpu_seconds(cpu, proc)
        proc.wait(timeout=120)
    return {"rate": tasks / wall, "cpu_ms_per_task": sum(cpu.values()) / tasks * 1000}


def _start(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "manage.py", "runworker"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def enqueue_beside(env: dict[str, str], tasks: int, waiting: int) -> dict[str, float]:
    """The node full of long tasks, ``waiting`` more workers idle: time the enqueues."""
    from workers import queue
    from workers.models import Task, Worker
    from workers.spec import TaskSpec

    Task.objects.all().delete()
    cores = psutil.cpu_count() or 1
    for _ in range(cores):
        queue.enqueue(TaskSpec(func_path="bench.tasks.hold", args=[1, 600]))
    procs = [_start(env) for _ in range(cores + waiting)]
    try:
        while (Task.objects.filter(state="RUNNING").count() < cores
               or Worker.objects.filter(state="RUNNING").count() < len(procs)):
            time.sleep(POLL)
        return _enqueue_beside(procs, tasks)
    finally:
        _abort(procs)  # the long tasks are stopped


def enqueue_idle(env: dict[str, str], tasks: int, idle: int, gap: float = 0.0
                 ) -> dict[str, float]:
    """``idle`` workers with nothing to do, on a node whose CPUs are raised to
    IDLE_NODE_CPUS so that none waits for a CPU: time the enqueues, which the idle workers
    run meanwhile."""
    from workers.models import Task, Worker

    Task.objects.all().delete()
    procs = [_start({**env, "WORKER_NODE_CPUS": str(IDLE_NODE_CPUS)}) for _ in range(idle)]
    try:
        while Worker.objects.filter(state="RUNNING").count() < idle:
            time.sleep(POLL)
        time.sleep(1.0)  # past their start's first look
        return _enqueue_beside(procs, tasks, gap)
    finally:
        _abort(procs)


def _enqueue_beside(procs: list[subprocess.Popen[bytes]], tasks: int, gap: float = 0.0
                    ) -> dict[str, float]:
    """Enqueue ``tasks`` no-ops one call at a time (``gap`` apart): the calls' rate, and
    the CPU seconds the workers ``procs`` spent meanwhile (with a gap: until every task is
    done)."""
    from workers.models import Task

    before: dict[int, float] = {}
    for proc in procs:
        _cpu_seconds(before, proc)
    started = time.perf_counter()
    _enqueue(tasks, gap)
    wall = time.perf_counter() - started
    while gap and Task.objects.filter(state="SUCCEEDED").count() < tasks:
        time.sleep(POLL)
    after: dict[int, float] = {}
    for proc in procs:
        _cpu_seconds(after, proc)
    spent = sum(after[pid] - before.get(pid, 0.0) for pid in after)
    return {"rate": tasks / wall, "workers_cpu_s": spent,
            "workers_cpu_ms_per_task": spent / tasks * 1000}


def _abort(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    for proc in procs:
        proc.wait(timeout=120)


def run(kind: str, tasks: int, runs: int, counts: list[int], idle: list[int], *,
        gap: float = 0.0) -> dict[str, Any]:
    with database(kind, name="bench_crowded", prefix="crc-") as (url, workdir):
        env = _default_env(url, workdir)
        _setup(env)
        drains: dict[int, list[dict[str, float]]] = {count: [] for count in counts}
        enqueues: dict[int, list[dict[str, float]]] = {} if gap else {0: [], 1: []}
        idles: dict[int, list[dict[str, float]]] = {count: [] for count in idle}
        for _ in range(runs):
            for count in counts:
                drains[count].append(drain(env, tasks, count))
            for waiting, results in enqueues.items():
                results.append(enqueue_beside(env, tasks, waiting))
            for count, results in idles.items():
                results.append(enqueue_idle(env, tasks, count, gap))
    return {"database": kind, "tasks": tasks, "cores": psutil.cpu_count(),
            "drain_by_workers": {count: _summary(found, "cpu_ms_per_task")
                                 for count, found in drains.items()},
            "enqueue_by_waiting_workers": {waiting: _summary(found, "workers_cpu_s")
                                           for waiting, found in enqueues.items()},
            f"enqueue_by_idle_workers (WORKER_NODE_CPUS={IDLE_NODE_CPUS}, gap {gap * 1000:g} ms)": {
                count: _summary(found, "workers_cpu_ms_per_task" if gap else "workers_cpu_s")
                for count, found in idles.items()}}


def _summary(results: list[dict[str, float]], cost: str) -> dict[str, Any]:
    rates = [round(r["rate"], 1) for r in results]  # in the order they were taken
    return {"rate_median": statistics.median(rates), "rates": rates,
            f"{cost}_median": round(statistics.median(r[cost] for r in results), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="*", default=[2, 3, 4],
                        help="drain with these many workers (none: no drain)")
    parser.add_argument("--idle", type=int, nargs="*", default=[0, 2, 6],
                        help="enqueue beside these many idle workers (none: not measured)")
    parser.add_argument("--gap", type=float, default=0.0,
                        help="milliseconds between the calls beside idle workers (then only "
                             "those are measured)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    emit(run(args.db, args.tasks, args.runs, args.workers, args.idle, gap=args.gap / 1000),
         args.json)


if __name__ == "__main__":
    main()

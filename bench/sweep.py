"""Benchmark: a 6-point sweep of CPU-bound slab simulations on 1 worker, then on 2.

Target: the 2-worker sweep finishes in at most 0.55 of the 1-worker time (0.5 is the limit
on two cores). Each run is timed from submission until the sweep's summary step is done, so
the (serial) summary counts too. Not part of the test run.

    .venv/bin/python bench/sweep.py                # throwaway SQLite database
    DATABASE_URL=postgres://... .venv/bin/python bench/sweep.py

Two cores are easily disturbed: before each run it waits (up to --quiet-wait s) until other
processes use under 10 % of a core, and it reports the CPU time foreign processes took while
it measured (bench/peers/machine.py). Exit status 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench" / "peers"))
from machine import ForeignLoad, wait_until_quiet  # noqa: E402 - the peers' load meter

TARGET_RATIO = 0.55
POLL = 0.1  # seconds between looks at the summary task: the resolution of the timing
GRID = [("h", ["200", "800", "3200"]), ("initial_temp", ["900", "1200"])]


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="101", help="grid points per point (cost ~ n²)")
    parser.add_argument("--t-end", default="3600", help="simulated seconds per point")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after (s)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="alternate the two runs this many times; the best of each counts")
    parser.add_argument("--quiet-wait", type=float, default=120.0,
                        help="wait up to this long for a quiet machine before each run (s)")
    return parser.parse_args()


def configure(scratch: Path) -> dict[str, str]:
    """Environment for this process and its workers: fast polling, scratch directories."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    env.setdefault("DATABASE_URL", f"sqlite:///{scratch / 'bench.sqlite3'}")
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        WORKER_LOG_DIR=str(scratch / "logs"),
        WORKER_WORK_DIR=str(scratch / "work"),
        WORKER_DOORBELL_DIR=str(scratch / "bell"),
        WORKER_HEARTBEAT_INTERVAL="2",
        WORKER_POLL_INTERVAL="0.5",
        WORKER_TICK_INTERVAL="1",
        PYTHONUNBUFFERED="1",
    )
    os.environ.update(env)
    return env


def start_workers(count: int, env: dict[str, str], scratch: Path) -> list[subprocess.Popen[bytes]]:
    from workers.models import Worker
    from workers.states import ACTIVE_WORKER_STATES, WorkerState

    before = set(Worker.objects.filter(state__in=ACTIVE_WORKER_STATES).values_list("pk", flat=True))
    procs = []
    for index in range(count):
        log = (scratch / f"worker-{count}-{index}.out").open("wb")
        procs.append(subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "runworker"], cwd=ROOT, env=env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        ))
    deadline = time.monotonic() + 60
    while Worker.objects.filter(state=WorkerState.RUNNING).exclude(pk__in=before).count() < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{count} workers did not start; see {scratch}/worker-*.out")
        time.sleep(0.1)
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM drains an idle worker at once; a second one aborts a busy one."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        for last_resort in (False, True):
            try:
                proc.wait(timeout=5)
                break
            except subprocess.TimeoutExpired:
                if last_resort:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                else:
                    proc.send_signal(signal.SIGTERM)


def time_sweep(args: argparse.Namespace) -> tuple[float, list[float]]:
    """Submit the sweep, wait for its summary; return wall time and each point's run time."""
    from simulations import services
    from workers.models import Task
    from workers.states import FINISHED_TASK_STATES, TaskState

    params = {"thickness": "0.05", "n": args.n, "t_end": args.t_end, "target_temp": "600"}
    started = time.monotonic()
    sweep = services.submit_sweep("slab", params, GRID, services.Options(name="bench"))
    deadline = started + args.timeout
    while Task.objects.get(pk=sweep.summary_task_id).state not in FINISHED_TASK_STATES:
        if time.monotonic() > deadline:
            raise SystemExit(f"sweep {sweep.pk} did not finish within {args.timeout:g} s")
        time.sleep(POLL)
    elapsed = time.monotonic() - started
    summary = Task.objects.get(pk=sweep.summary_task_id)
    if summary.state != TaskState.SUCCEEDED:
        raise SystemExit(f"sweep {sweep.pk} failed: {summary.error}")
    tasks = Task.objects.filter(pk__in=sweep.simulations.values("task_id"))
    return elapsed, [(t.finished_at - t.started_at).total_seconds() for t in tasks
                     if t.finished_at and t.started_at]


def _warm(_: int) -> None:
    import simulations.physics.slab  # noqa: F401 - imported before the clock starts

    time.sleep(0.5)  # long enough that every process of the pool takes one


def _point(h: float, initial_temp: float, n: int, t_end: float) -> None:
    from simulations.physics.slab import simulate

    simulate(0.05, initial_temp, 30.0, h, t_end, n=n, target_temp=600.0)


def bare(count: int, args: argparse.Namespace) -> float:
    """The same six computations in bare processes, ``count`` at a time: the machine's own
    scaling, without Crucible (warm processes, so imports are not timed)."""
    points = [(float(h), float(t0)) for h in GRID[0][1] for t0 in GRID[1][1]]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
        list(pool.map(_warm, range(count)))
        wait_until_quiet(args.quiet_wait)
        started = time.monotonic()
        list(pool.map(_point, *zip(*[(h, t0, int(args.n), float(args.t_end))
                                     for h, t0 in points], strict=True)))
        return time.monotonic() - started


def run(count: int, args: argparse.Namespace, env: dict[str, str], scratch: Path) -> float:
    procs = start_workers(count, env, scratch)
    try:
        quiet = wait_until_quiet(args.quiet_wait)
        own = time.process_time()
        with ForeignLoad() as load:
            elapsed, points = time_sweep(args)
        own = time.process_time() - own
    finally:
        stop_workers(procs)
    mean = sum(points) / len(points)
    foreign = load.report()
    sys.stdout.write(
        f"{count} worker(s): {elapsed:6.2f} s  (points {min(points):.2f}..{max(points):.2f} s, "
        f"mean {mean:.2f} s; foreign CPU {foreign['pct_of_one_core']}% of a core, "
        f"this script {100 * own / elapsed:.1f}%"
        f"{'' if quiet else ', machine was not quiet'})\n"
    )
    return elapsed


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through stop_workers: no worker left running


def main() -> int:
    args = parse()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)  # also when started in the background
    with tempfile.TemporaryDirectory(prefix="crucible-bench-") as tmp:
        scratch = Path(tmp)
        env = configure(scratch)
        sys.path.insert(0, str(ROOT))
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        sys.stdout.write(f"6-point slab sweep, n={args.n}, t_end={args.t_end} s, "
                         f"{os.cpu_count()} CPUs, {env['DATABASE_URL'].split(':')[0]}\n")
        times: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(max(1, args.repeat)):
            for count in (1, 2):
                times[count].append(run(count, args, env, scratch))
        alone, paired = bare(1, args), bare(2, args)
    one, two = min(times[1]), min(times[2])
    if args.repeat > 1:
        sys.stdout.write(f"best of {args.repeat}: 1 worker {one:.2f} s, 2 workers {two:.2f} s\n")
    sys.stdout.write(f"without Crucible, the same 6 computations in bare processes: 1 at a time "
                     f"{alone:.2f} s, 2 at a time {paired:.2f} s, ratio {paired / alone:.3f}\n")
    ratio = two / one
    verdict = "OK" if ratio <= TARGET_RATIO else "MISSED"
    sys.stdout.write(f"ratio 2/1 workers: {ratio:.3f} (target <= {TARGET_RATIO}) {verdict}\n")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())

"""Simulations run by real worker processes: a sweep on two workers, cancel and timeout of an
external program (no process left behind), and ``simulate --wait``."""

from __future__ import annotations

import csv
from io import StringIO
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from simulations import comparison, display, external, follow, services, workdir
from simulations.models import Simulation, Sweep
from tests.conftest import wait_for
from workers import queue
from workers.models import Run, Task, Worker
from workers.models.run import RunState
from workers.pool import launcher
from workers.states import Outcome, TaskState, WorkerState

from .helpers import running_workers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

FOREVER = {"steps": "100000000", "stride": "100000"}


def task_of(row: Simulation | Sweep) -> Task:
    task_id = row.task_id if isinstance(row, Simulation) else row.summary_task_id
    assert task_id is not None
    return Task.objects.get(pk=task_id)


def state(row: Simulation | Sweep) -> str:
    return task_of(row).state


def program_processes(directory: Path) -> list[psutil.Process]:
    """The lorenz program running in this work directory, if any."""
    script = str(external.PROGRAMS_DIR / "lorenz.py")
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if script in (proc.info["cmdline"] or []) and Path(proc.cwd()) == directory:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def start(workers: Any, count: int) -> None:
    for _ in range(count):
        workers.start()
    wait_for(lambda: len(running_workers()) == count, timeout=20)


def test_a_sweep_of_six_points_on_two_workers_ends_with_its_comparison(workers):
    start(workers, 2)
    sweep = services.submit_sweep(
        "slab", {"t_end": "600", "n": "41", "target_temp": "600"},
        [("h", ["200", "800", "3200"]), ("thickness", ["0.05", "0.1"])],
    )
    wait_for(lambda: state(sweep) in {TaskState.SUCCEEDED, TaskState.FAILED}, timeout=45, every=0.2)

    summary_task = task_of(sweep)
    assert summary_task.state == TaskState.SUCCEEDED, summary_task.error
    points = list(Simulation.objects.filter(sweep=sweep))
    tasks = [task_of(p) for p in points]
    assert {t.state for t in tasks} == {TaskState.SUCCEEDED}
    assert len({t.worker_id for t in tasks}) == 2, "both workers ran points"
    for point, task in zip(points, tasks, strict=True):
        assert 0 < (task.peak_rss_bytes or 0) <= point.memory_mb * 2**20, "an honest estimate"

    sweep.refresh_from_db()
    table = sweep.summary
    assert table is not None
    times = dict(zip(comparison.column(table, "simulation"),
                     comparison.column(table, "time_to_target"), strict=True))
    assert times == {p.pk: (p.result or {})["time_to_target"] for p in points}
    by_point = {(p.parameters["h"], p.parameters["thickness"]): (p.result or {})["time_to_target"]
                for p in points}
    for thickness in (0.05, 0.1):
        curve = [by_point[(h, thickness)] for h in (200.0, 800.0, 3200.0)]
        assert curve == sorted(curve, reverse=True), "more cooling, sooner at the target"
    assert all(by_point[(h, 0.05)] < by_point[(h, 0.1)] for h in (200.0, 800.0, 3200.0))

    directory = workdir.for_sweep(sweep.pk)
    with (directory / comparison.CSV_FILE).open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    assert {int(r["simulation"]): float(r["time_to_target (s)"]) for r in rows} == pytest.approx(
        times)
    assert (directory / comparison.PLOT_FILE).stat().st_size > 10_000
    assert summary_task.result == {"points": 6, "metric": "time_to_target", "plot": True}
    wait_for(lambda: Run.objects.get(sweep=sweep).state == RunState.COMPLETED, timeout=30)


def test_a_failed_point_skips_the_summary_and_the_other_points_finish(workers):
    """A sweep is a run with failure policy ``continue``: one broken point costs only the
    comparison, never its siblings' results."""
    sweep = services.submit_sweep("slab", {"t_end": "60", "n": "11"},
                                  [("h", ["200", "800", "3200"])])
    broken, *others = sweep.simulations.order_by("pk")
    Simulation.objects.filter(pk=broken.pk).update(  # now refused by its kind when it runs
        parameters={**broken.parameters, "h": 5e6})
    Task.objects.filter(pk=task_of(broken).pk).update(max_attempts=1)
    start(workers, 2)

    wait_for(lambda: Run.objects.get(sweep=sweep).finished_at is not None, timeout=45,
             every=0.2)

    assert state(broken) == TaskState.FAILED
    assert {state(point) for point in others} == {TaskState.SUCCEEDED}
    summary_task = task_of(sweep)
    assert summary_task.state == TaskState.CANCELLED and summary_task.started_at is None
    assert Run.objects.get(sweep=sweep).state == RunState.FAILED


def test_cancelling_a_running_program_leaves_no_process_behind(workers):
    sim = services.submit("lorenz", FOREVER)
    start(workers, 1)
    wait_for(lambda: (task_of(sim).progress or 0) > 0, timeout=20)
    directory = workdir.for_simulation(sim.pk)
    [program] = program_processes(directory)

    queue.cancel(task_of(sim).pk)
    wait_for(lambda: state(sim) == TaskState.CANCELLED, timeout=3)
    wait_for(lambda: gone(program), timeout=2)
    assert not psutil.pid_exists(program.pid) or gone(program)
    assert program_processes(directory) == []
    assert task_of(sim).attempts.get().outcome == Outcome.CANCELLED
    assert "lorenz: sigma=10 rho=28" in display.log_tail(task_of(sim)), "its output is logged"
    assert len(running_workers()) == 1, "the worker goes on"


def test_a_program_past_its_timeout_is_killed(workers):
    sim = services.submit("lorenz", FOREVER, services.Options(timeout="1"))
    start(workers, 1)
    directory = workdir.for_simulation(sim.pk)
    [program] = wait_for(lambda: program_processes(directory), timeout=20)

    task = task_of(sim)
    wait_for(lambda: task.attempts.filter(outcome=Outcome.TIMED_OUT).exists(), timeout=5)
    wait_for(lambda: gone(program), timeout=2)
    assert "Timed out after 1 s" in task.attempts.get(number=1).error
    queue.cancel(task.pk)
    wait_for(lambda: state(sim) == TaskState.CANCELLED, timeout=5)
    wait_for(lambda: program_processes(directory) == [], timeout=2)


def test_aborting_the_worker_kills_the_program_and_requeues_the_simulation(workers):
    sim = services.submit("lorenz", FOREVER)
    start(workers, 1)
    directory = workdir.for_simulation(sim.pk)
    [program] = wait_for(lambda: program_processes(directory), timeout=20)
    worker_id = task_of(sim).worker_id
    assert worker_id is not None

    launcher.abort(worker_id)
    wait_for(lambda: gone(program), timeout=3)
    wait_for(lambda: Worker.objects.get(pk=worker_id).state == WorkerState.DEAD, timeout=5)
    assert state(sim) == TaskState.QUEUED, "it runs again on another worker"
    assert task_of(sim).attempts.get().outcome == Outcome.ABORTED
    assert program_processes(directory) == []


def test_simulate_wait_shows_progress_then_the_result(workers):
    start(workers, 1)
    out = StringIO()
    call_command("simulate", "slab", "-p", "n=41", "-p", "target_temp=600", "--wait",
                 "--poll", "0.1", stdout=out)
    text = out.getvalue()
    sim = Simulation.objects.get()
    assert text.startswith(f"simulation {sim.pk} (task {sim.task_id})\n")
    assert f"[{'#' * follow.BAR_WIDTH}] 100%  1 succeeded" in text
    assert f"Time to target: {(sim.result or {})['time_to_target']:.6g}"[:18] in text

    with pytest.raises(CommandError, match=r"(?s)did not succeed: task \d+ failed: .*diverged"):
        call_command("simulate", "lorenz", "-p", "sigma=100", "-p", "rho=500", "-p", "dt=0.05",
                     "--wait", "--poll", "0.1", stdout=StringIO())

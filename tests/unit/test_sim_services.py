"""Submitting, the kinds run in-process (no workers), sweeps' summaries and work directories."""

from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np
import pytest

from simulations import comparison, external, registry, services, workdir
from simulations.exceptions import FileRefused, InvalidParameters, ProgramFailed, UnknownKind
from simulations.kinds import lorenz, slab, summary
from simulations.models import Simulation, Sweep
from tests.unit.test_slab import exact_temp, exact_time_to_core
from workers import context, runs
from workers.models import Run, Task
from workers.models.run import FailurePolicy, RunState
from workers.states import TaskState

pytestmark = pytest.mark.django_db

REFERENCE = {"thickness": 0.1, "initial_temp": 900, "ambient_temp": 30, "h": 500,
             "t_end": 600, "n": 101, "target_temp": 400}


@pytest.fixture
def reports():
    """Run kinds as a worker would: progress reports are recorded here."""
    calls: list[tuple[float | None, str]] = []
    context.activate(context.TaskContext(1, 1, 1, lambda f, m: calls.append((f, m))))
    yield calls
    context.activate(None)


def task_of(row: Simulation | Sweep) -> Task:
    task_id = row.task_id if isinstance(row, Simulation) else row.summary_task_id
    assert task_id is not None
    return Task.objects.get(pk=task_id)


def nothing_written() -> bool:
    return not Simulation.objects.exists() and not Sweep.objects.exists() and \
        not Task.objects.exists() and not Run.objects.exists()


def test_submit_stores_the_simulation_and_enqueues_its_task(crucible):
    sim = services.submit("slab", {"h": "250", "n": "201"},
                          services.Options(name="quench", priority="5", timeout="60"))
    sim.refresh_from_db()
    assert sim.parameters["h"] == 250.0
    assert sim.parameters["n"] == 201
    assert sim.memory_mb == slab.memory_mb(sim.parameters) >= slab.PROCESS_BASELINE_MB
    assert sim.submitted_by is None
    task = task_of(sim)
    assert task.func_path == "simulations.kinds.slab.run"
    assert task.kwargs == {"simulation_id": sim.pk}
    assert (task.memory_mb, task.priority, task.timeout) == (sim.memory_mb, 5, 60.0)
    assert task.state == TaskState.QUEUED


@pytest.mark.parametrize(
    ("params", "options", "message"),
    [
        ({"h": "5e6"}, {}, "h: 5e6 is outside 1..1e5 W/m²K"),
        ({"n": "many"}, {}, "n: expected a number, got 'many'"),
        ({"thickness": 0}, {}, "thickness: 0 is outside 0.001..2 m"),
        ({}, {"priority": "500"}, "priority: 500 is outside -100..100"),
        ({}, {"timeout": "-1"}, "timeout: -1 is outside 1..172800 s"),
    ],
)
def test_a_refusal_names_the_parameter_and_writes_nothing(crucible, params, options, message):
    with pytest.raises(InvalidParameters, match=message):
        services.submit("slab", params, services.Options(**options))
    assert nothing_written()


def test_an_unknown_kind_lists_the_known_ones(crucible):
    with pytest.raises(UnknownKind, match=r"no simulation kind 'nope' \(known: lorenz, slab\)"):
        services.submit("nope", {})
    assert nothing_written()


def test_the_slab_kind_matches_the_analytic_reference(crucible, reports):
    sim = services.submit("slab", REFERENCE)
    returned = slab.run.call(simulation_id=sim.pk)

    sim.refresh_from_db()
    assert sim.result == returned
    assert returned["time_to_target"] == pytest.approx(exact_time_to_core(400.0), abs=0.6)
    assert returned["biot"] == pytest.approx(500 * 0.05 / 45)
    directory = workdir.for_simulation(sim.pk)
    assert directory == crucible.work_dir / "sim" / str(sim.pk)
    assert {f.name for f in workdir.files(directory)} == {"curves.csv", "profile.csv",
                                                          "summary.json"}
    assert json.loads((directory / "summary.json").read_text()) == returned
    curves = np.loadtxt(directory / "curves.csv", delimiter=",", skiprows=1)
    later = curves[curves[:, 0] > 0]
    exact = np.array([exact_temp(0.0, t) for t in later[:, 0]])
    assert np.max(np.abs(later[:, 1] - exact)) < 0.02  # °C, core, against the series solution
    fractions = [f for f, _ in reports]
    assert 50 <= len(fractions) <= 101
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0


def test_the_history_option_saves_the_field(crucible, reports):
    sim = services.submit("slab", {"n": 21, "samples": 15, "t_end": 60, "history": "true"})
    slab.run.call(simulation_id=sim.pk)
    saved = np.load(workdir.for_simulation(sim.pk) / "history.npz")
    assert saved["T"].shape == (15, 21)
    assert saved["times"].shape == (15,)


def test_a_retry_starts_from_an_empty_work_directory(crucible):
    sim = services.submit("slab", {"n": 11, "t_end": 10})
    stale = workdir.for_simulation(sim.pk)
    stale.mkdir(parents=True)
    (stale / "half-written.csv").write_text("from a killed attempt")
    slab.run.call(simulation_id=sim.pk)
    assert not (stale / "half-written.csv").exists()


def test_the_lorenz_kind_runs_its_program_in_the_work_directory(crucible, reports, capfd):
    sim = services.submit("lorenz", {"steps": 2000, "stride": 100})
    result = lorenz.run.call(simulation_id=sim.pk)

    directory = workdir.for_simulation(sim.pk)
    with (directory / "lorenz.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["t", "x", "y", "z"]
    assert len(rows) == 1 + 1 + 2000 // 100
    assert float(rows[-1][1]) == pytest.approx(result["final_x"])
    assert result["steps"] == 2000
    assert result["lobe_switches"] >= 1
    assert "lorenz: done" in capfd.readouterr().out, "program output goes to the task log"
    assert "lorenz: done" in (directory / "program.log").read_text()
    assert reports[-1] == (1.0, "done")


def test_a_failing_program_fails_the_task_with_its_last_output(crucible, reports):
    sim = services.submit("lorenz", {"sigma": 100, "rho": 500, "dt": 0.05, "steps": 100000})
    with pytest.raises(ProgramFailed, match=r"(?s)lorenz.py exited with code 2:.*diverged at step"):
        lorenz.run.call(simulation_id=sim.pk)


def test_the_command_comes_from_the_definition_and_gets_no_secrets(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://secret@db/x")
    command = lorenz.PROGRAM.command({**lorenz.SCHEMA.defaults(), "steps": 5, "stride": 1})
    assert command[:3] == [sys.executable, "-I", "-u"]
    assert command[3] == str(external.PROGRAMS_DIR / "lorenz.py")
    assert "--steps=5" in command
    assert "DATABASE_URL" not in external.environment()
    outside = external.Program(script="../kinds/slab.py", arguments=())
    with pytest.raises(ProgramFailed, match="is not in"):
        outside.command({})


def test_a_sweep_is_one_simulation_per_point_then_a_waiting_summary(crucible):
    sweep = services.submit_sweep("slab", {"t_end": "30", "n": "11"},
                                  [("h", ["50", "500", "5000"]), ("thickness", ["0.05", "0.1"])],
                                  services.Options(name="grid"))
    points = list(sweep.simulations.order_by("pk"))
    assert len(points) == 6
    assert points[0].name == "grid: h=50 W/m²K, thickness=0.05 m"
    assert sweep.grid == [{"name": "h", "values": [50.0, 500.0, 5000.0]},
                          {"name": "thickness", "values": [0.05, 0.1]}]
    assert "h" not in sweep.parameters
    assert sweep.parameters["t_end"] == 30.0
    final = task_of(sweep)
    assert final.func_path == "simulations.kinds.summary.summarise"
    assert final.state == TaskState.WAITING
    assert final.pending_dependencies == 6
    assert set(final.dependencies.values_list("depends_on_id", flat=True)) == {
        p.task_id for p in points}


def test_a_sweep_is_a_run_of_its_points_then_its_summary(crucible):
    sweep = services.submit_sweep("slab", {"t_end": "30", "n": "11"},
                                  [("h", ["50", "500"])], services.Options(name="grid"))

    run = sweep.run
    assert run is not None
    assert (run.name, run.state, run.failure_policy) == (
        "grid", RunState.RUNNING, FailurePolicy.CONTINUE)
    points = list(sweep.simulations.order_by("pk"))
    tasks = {task.name: task for task in Task.objects.filter(run=run)}
    assert set(tasks) == {"1: h=50 W/m²K", "2: h=500 W/m²K", "summary"}
    assert [tasks["1: h=50 W/m²K"].pk, tasks["2: h=500 W/m²K"].pk] == [
        p.task_id for p in points]
    assert tasks["summary"].pk == sweep.summary_task_id
    assert {t.state for name, t in tasks.items() if name != "summary"} == {TaskState.QUEUED}
    summary_line = runs.report(run.pk).tasks[-1]
    assert summary_line.name == "summary"
    assert sorted(summary_line.depends_on) == ["1: h=50 W/m²K", "2: h=500 W/m²K"]


def test_pausing_a_sweeps_run_holds_its_points_and_cancelling_the_sweep_cancels_it(crucible):
    sweep = services.submit_sweep("slab", {"t_end": "30", "n": "11"}, [("h", ["50", "500"])])
    assert sweep.run_id is not None
    point_tasks = Task.objects.filter(pk__in=sweep.simulations.values("task"))

    runs.pause(sweep.run_id)
    assert set(point_tasks.values_list("state", flat=True)) == {TaskState.WAITING}
    runs.resume(sweep.run_id)
    assert set(point_tasks.values_list("state", flat=True)) == {TaskState.QUEUED}

    assert services.cancel_sweep(sweep) == 3
    assert Run.objects.get(sweep=sweep).state == RunState.CANCELLED
    assert set(Task.objects.filter(run_id=sweep.run_id).values_list("state", flat=True)) == {
        TaskState.CANCELLED}


def test_deleting_a_sweep_cancels_its_run(crucible):
    sweep = services.submit_sweep("slab", {"t_end": "30", "n": "11"}, [("h", ["50", "500"])])
    run_id = sweep.run_id
    assert run_id is not None

    sweep.delete()

    run = Run.objects.get(pk=run_id)
    assert run.state == RunState.CANCELLED
    assert "deletion of its sweep" in run.reason


def test_a_bad_sweep_value_writes_nothing(crucible):
    with pytest.raises(InvalidParameters, match=r"h: 5e6 is outside 1\.\.1e5 W/m²K"):
        services.submit_sweep("slab", {}, [("h", ["10", "5e6"])])
    assert nothing_written()


def test_the_summary_compares_the_points_in_a_table_and_a_plot(crucible, reports):
    sweep = services.submit_sweep("slab", {"t_end": "3000", "n": "11", "target_temp": "600"},
                                  [("h", ["100", "1000"]), ("thickness", ["0.05", "0.1"])])
    for point in sweep.simulations.all():
        slab.run.call(simulation_id=point.pk)
    returned = summary.summarise.call(sweep_id=sweep.pk)

    sweep.refresh_from_db()
    assert returned == {"points": 4, "metric": "time_to_target", "plot": True}
    table = sweep.summary
    assert table is not None
    times = comparison.column(table, "time_to_target")
    for sim_id, value in zip(comparison.column(table, "simulation"), times, strict=True):
        assert (Simulation.objects.get(pk=sim_id).result or {})["time_to_target"] == value
    by_point = dict(zip(zip(comparison.column(table, "h"), comparison.column(table, "thickness"),
                            strict=True), times, strict=True))
    assert by_point[(1000.0, 0.05)] < by_point[(100.0, 0.05)] < by_point[(100.0, 0.1)]
    directory = workdir.for_sweep(sweep.pk)
    with (directory / "comparison.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:4] == ["simulation", "h (W/m²K)", "thickness (m)", "time_to_target (s)"]
    assert len(rows) == 5
    assert (directory / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((directory / "comparison.json").read_text()) == table


@pytest.mark.parametrize("name", ["../secret", "/etc/passwd", "a/../../b", "", "sub\\..\\x",
                                  "missing.csv", "sub"])
def test_nothing_outside_the_work_directory_is_served(tmp_path, name):
    directory = tmp_path / "sim" / "1"
    (directory / "sub").mkdir(parents=True)
    (tmp_path / "secret").write_text("no")
    with pytest.raises(FileRefused):
        workdir.resolve(directory, name)


def test_a_symlink_out_of_the_work_directory_is_refused(tmp_path):
    directory = tmp_path / "sim" / "1"
    directory.mkdir(parents=True)
    (tmp_path / "secret").write_text("no")
    os.symlink(tmp_path / "secret", directory / "link")
    (directory / "ok.csv").write_text("1,2\n")
    assert workdir.resolve(directory, "ok.csv") == (directory / "ok.csv").resolve()
    with pytest.raises(FileRefused):
        workdir.resolve(directory, "link")
    assert [f.name for f in workdir.files(directory)] == ["ok.csv"]


@pytest.mark.parametrize("keep", [True, False])
def test_deleting_a_simulation_cancels_its_task_and_cleans_per_setting(
    crucible, settings, django_capture_on_commit_callbacks, keep
):
    settings.SIMULATIONS_KEEP_WORK_DIRS = keep
    sim = services.submit("slab", {"n": 11, "t_end": 10})
    slab.run.call(simulation_id=sim.pk)
    directory = workdir.for_simulation(sim.pk)
    with django_capture_on_commit_callbacks(execute=True):
        sim.delete()
    assert Task.objects.get().state == TaskState.CANCELLED
    assert directory.exists() is keep


def test_ids_alone_make_the_work_directories(crucible):
    assert workdir.for_simulation(12) == crucible.work_dir / "sim" / "12"
    assert workdir.for_sweep(3) == crucible.work_dir / "sweep" / "3"
    assert registry.get("slab").func_path == "simulations.kinds.slab.run"


def test_every_refused_field_is_reported_at_once(crucible):
    with pytest.raises(InvalidParameters) as caught:
        services.submit("slab", {"h": 0, "n": 1}, services.Options(priority=1000))
    assert [error.name for error in caught.value.errors] == ["h", "n", "priority"]
    assert nothing_written()

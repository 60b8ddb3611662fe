"""A run's work directories: each task its own, merged into the run's output/ when the run
completes; ``runs cleanup`` removes old finished runs and orphaned directories."""

from __future__ import annotations

import io
import os
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from tests.conftest import wait_for
from workers import runs
from workers.models import Run, Task
from workers.models.run import RunState
from workers.runs import workdir

from .helpers import TASKS
from .test_runs import by_name, finished

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def test_each_task_writes_its_own_directory_merged_when_the_run_completes(workers, crucible):
    run = runs.submit({"name": "outputs", "merge_outputs": True, "tasks": [
        {"name": "load", "task": f"{TASKS}.write_output", "args": ["data/a.txt", "from load"]},
        {"name": "plot", "task": f"{TASKS}.write_output", "args": ["plots/p.txt", "from plot"],
         "depends_on": ["load"]},
        {"name": "clash", "task": f"{TASKS}.write_output", "args": ["data/a.txt", "second"],
         "depends_on": ["load"]},
    ]})
    workers.start()

    assert finished(run.pk).state == RunState.COMPLETED
    tasks = by_name(run)
    own = workdir.for_task(run.pk, tasks["load"].pk, "load")
    assert tasks["load"].result == str(own / "data" / "a.txt")
    assert (own / "data" / "a.txt").read_text() == "from load"
    out = workdir.output(run.pk)
    wait_for((out / "plots" / "p.txt").exists, timeout=30)  # merged after the commit
    assert (out / "plots" / "p.txt").read_text() == "from plot"
    assert (out / "data" / "a.txt").read_text() == "from load", "the first submitted keeps it"


def age(run: Run, days: float) -> None:
    Run.objects.filter(pk=run.pk).update(finished_at=timezone.now() - timedelta(days=days))


def test_cleanup_removes_old_finished_runs_and_orphans_and_dry_run_removes_nothing(crucible):
    old = runs.submit({"name": "old", "tasks": [{"name": "A", "task": f"{TASKS}.noop"}]})
    recent = runs.submit({"name": "recent", "tasks": [{"name": "A", "task": f"{TASKS}.noop"}]})
    active = runs.submit({"name": "active", "tasks": [{"name": "A", "task": f"{TASKS}.noop"}]})
    Task.objects.filter(run__in=[old, recent]).update(state="SUCCEEDED")
    runs.sweep()
    age(old, 10)
    age(recent, 1)
    for run in (old, recent, active):
        (workdir.for_run(run.pk) / "tasks").mkdir(parents=True)
    gone_run = workdir.for_run(999999)
    stray = workdir.root() / "scratch"
    gone_run.mkdir()
    stray.mkdir()

    def cli(*args: str) -> str:
        out = io.StringIO()
        call_command("runs", "cleanup", "--days", "7", *args, stdout=out)
        return out.getvalue()

    listed = cli("--dry-run")
    assert f"would remove run {old.pk} (finished over 7 days ago)" in listed
    assert f"would remove {workdir.for_run(old.pk)}\n" in listed
    assert f"would remove {gone_run} (orphaned)" in listed and f"{stray} (orphaned)" in listed
    assert "1 run(s), 3 directories (2 orphaned) (dry run)" in listed
    assert all(p.exists() for p in (workdir.for_run(old.pk), gone_run, stray))
    assert Run.objects.count() == 3

    assert "1 run(s), 3 directories (2 orphaned)\n" in cli()
    assert set(Run.objects.values_list("name", flat=True)) == {"recent", "active"}
    assert not Task.objects.filter(run_id=old.pk).exists()
    assert sorted(os.listdir(workdir.root())) == sorted([str(recent.pk), str(active.pk)])


def test_cleanup_keeps_a_sweeps_run_until_the_sweep_is_deleted(crucible):
    from simulations import services

    sweep = services.submit_sweep("slab", {"t_end": "30", "n": "11"}, [("h", ["50", "500"])])
    run = sweep.run
    assert run is not None
    Task.objects.filter(run=run).update(state="SUCCEEDED")
    runs.sweep()
    age(run, 10)

    call_command("runs", "cleanup", "--days", "7", stdout=io.StringIO())
    assert Run.objects.filter(pk=run.pk).exists(), "its points' tasks are the sweep's record"
    assert Task.objects.filter(run=run).count() == 3

    sweep.delete()
    call_command("runs", "cleanup", "--days", "7", stdout=io.StringIO())
    assert not Run.objects.filter(pk=run.pk).exists()

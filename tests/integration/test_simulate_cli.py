"""``manage.py simulate --wait`` in a terminal, against a real worker: where to look (the admin
page, the work directory), an ETA while it runs, 80 columns, and no log lines in between."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from simulations import workdir
from simulations.follow import line, snapshot
from simulations.models import Simulation
from tests.conftest import ROOT, worker_env
from tests.integration.helpers import enqueue
from workers.models import Task
from workers.states import TaskState

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

# About a million explicit steps: a second or more on a fast, quiet machine (78,000 once
# ended in 0.13 s, before a second poll could measure a rate), longer on a busy one.
LONG_ENOUGH = ["-p", "thickness=0.1", "-p", "t_end=40000"]


def simulate(runtime_dir: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "simulate", *args],
        cwd=ROOT, env=worker_env(runtime_dir), capture_output=True, text=True, timeout=150,
        check=False,
    )


def test_simulate_wait_says_where_to_look_shows_an_eta_and_fits_80_columns(workers,
                                                                           runtime_dir):
    workers.start()

    done = simulate(runtime_dir, "slab", *LONG_ENOUGH, "--wait", "--poll", "0.2")

    assert done.returncode == 0, done.stderr
    sim = Simulation.objects.get()
    lines = done.stdout.splitlines()
    assert lines[:3] == [
        f"simulation {sim.pk} (task {sim.task_id})",
        f"  admin:     http://127.0.0.1:8000/admin/simulations/simulation/{sim.pk}/change/",
        f"  work dir:  {workdir.for_simulation(sim.pk)}",
    ]
    assert (workdir.for_simulation(sim.pk) / "summary.json").exists()
    assert any(re.search(r"%  ETA (\d+m )?\d+s  ", text) for text in lines), done.stdout
    assert max(len(text) for text in lines) <= 80
    assert done.stderr == "", "log records stay off the terminal"


def test_the_site_of_the_admin_link_can_be_given(workers, runtime_dir):
    done = simulate(runtime_dir, "slab", "--site", "https://sims.example.org/")

    sim = Simulation.objects.get()
    assert done.returncode == 0, done.stderr
    assert (f"  admin:     https://sims.example.org/admin/simulations/simulation/{sim.pk}/change/"
            in done.stdout.splitlines())


def test_the_eta_is_known_from_a_running_attempts_first_report(crucible):
    task = enqueue("add", 1, 2)
    Task.objects.filter(pk=task.pk).update(
        state=TaskState.RUNNING, progress=0.25,
        last_attempted_at=timezone.now() - timedelta(seconds=30))

    snap = snapshot([task.pk])

    assert snap.attempt_eta is not None and 89 <= snap.attempt_eta <= 95
    assert re.search(r"25%  ETA 1m 3\ds  1 running", line(snap, snap.attempt_eta))

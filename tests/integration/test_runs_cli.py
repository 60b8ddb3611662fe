"""``manage.py runs``: start from a file, status, list, pause/resume/cancel one or --all."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from workers import runs
from workers.models import Run, Task, Worker
from workers.models.run import RunState
from workers.states import TaskState, WorkerState

from .helpers import TASKS

pytestmark = pytest.mark.django_db


def run_cli(*args: str) -> str:
    out = io.StringIO()
    call_command("runs", *args, stdout=out)
    return out.getvalue()


def document(**extra: Any) -> dict[str, Any]:
    return {"name": "from-file", **extra, "tasks": [
        {"name": "load", "task": f"{TASKS}.record", "args": ["load"]},
        {"name": "process", "task": f"{TASKS}.record", "args": ["p"], "depends_on": ["load"]},
        {"name": "plot", "task": f"{TASKS}.noop", "depends_on": ["process"]},
    ]}


@pytest.fixture
def run_file(tmp_path: Path) -> Path:
    path = tmp_path / "RUN.json"
    path.write_text(json.dumps(document()))
    return path


def test_start_submits_the_file_under_the_name_given(crucible, run_file):
    out = run_cli("start", "nightly", "--file", str(run_file))

    run = Run.objects.get()
    assert out == f"started run {run.pk} nightly (3 tasks)\n"
    assert run.name == "nightly" and run.state == RunState.RUNNING
    status = run_cli("status", str(run.pk))
    assert f"run {run.pk} nightly: RUNNING" in status
    assert "process" in status and "after load" in status
    Task.objects.filter(run=run, name="load").update(state=TaskState.FAILED, error="Boom\nmore")
    assert "Boom" not in status and "      Boom" in run_cli("status", str(run.pk), "-v")


def test_start_refuses_a_missing_file_a_non_json_file_and_a_cycle(crucible, tmp_path):
    with pytest.raises(CommandError, match="cannot read"):
        run_cli("start", "x", "--file", str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(CommandError, match="is not a JSON document"):
        run_cli("start", "x", "--file", str(tmp_path / "bad.json"))
    loop = document()
    loop["tasks"][0]["depends_on"] = ["plot"]
    (tmp_path / "loop.json").write_text(json.dumps(loop))
    with pytest.raises(CommandError, match="cycle: load → process → plot → load"):
        run_cli("start", "x", "--file", str(tmp_path / "loop.json"))
    assert not Run.objects.exists()


def test_pause_all_lists_first_and_dry_run_changes_nothing(crucible):
    one, two = runs.submit(document()), runs.submit(document())
    done = Run.objects.create(name="old", state=RunState.COMPLETED)

    out = run_cli("pause", "--all", "--dry-run")
    assert f"run {one.pk} from-file (RUNNING)" in out and f"run {two.pk}" in out
    assert f"run {done.pk}" not in out
    assert set(Run.objects.values_list("state", flat=True)) == {RunState.RUNNING,
                                                                RunState.COMPLETED}

    out = run_cli("pause", "--all")
    assert "pause: 2 run(s) now PAUSED" in out
    assert not Task.objects.filter(state=TaskState.QUEUED).exists()
    assert "resume: 2 run(s) now RUNNING" in run_cli("resume", "--all")
    assert Task.objects.filter(state=TaskState.QUEUED).count() == 2


def test_cancel_all_needs_yes(crucible):
    run = runs.submit(document())
    with pytest.raises(CommandError, match="add --yes"):
        run_cli("cancel", "--all")
    assert Run.objects.get(pk=run.pk).state == RunState.RUNNING
    assert "1 run(s) now CANCELLED" in run_cli("cancel", "--all", "--yes")


def test_cancel_one_asks_unless_forced(crucible, monkeypatch):
    run = runs.submit(document())
    with pytest.raises(CommandError, match="not cancelled"):
        run_cli("cancel", str(run.pk))  # no terminal to answer: refused
    out = run_cli("cancel", str(run.pk), "--force")
    assert out == f"cancel run {run.pk} from-file: CANCELLED\n"
    with pytest.raises(CommandError, match="only an active run"):
        run_cli("pause", str(run.pk))
    with pytest.raises(CommandError, match="give a run ID or --all"):
        run_cli("pause")


def test_list_and_summary(crucible):
    run = runs.submit(document())
    now = timezone.now()
    Worker.objects.create(node="n", state=WorkerState.RUNNING, last_heartbeat=now)
    busy = Worker.objects.create(node="n", state=WorkerState.RUNNING, last_heartbeat=now)
    Worker.objects.create(node="n", state=WorkerState.RUNNING,
                          last_heartbeat=now - timedelta(seconds=crucible.stalled_after + 60))
    Worker.objects.create(node="n", state=WorkerState.DEAD)
    Task.objects.filter(run=run, name="load").update(state=TaskState.RUNNING, worker=busy)
    listed = run_cli("list", "--status", "running")
    assert f"{run.pk:>5} RUNNING" in listed and "0/3" in listed
    assert run_cli("list", "--status", "failed").count("\n") == 1, "the header alone"
    assert run_cli("summary") == (
        "Workers: 1 idle / 1 busy / 1 offline (utilization 50%) · Runs: 1 active / 1 total"
        " · Tasks: 0 completed / 0 failed / 2 queued\n")

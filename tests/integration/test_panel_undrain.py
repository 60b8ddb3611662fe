"""Cancel a drain: a worker an operator drained goes back to RUNNING and claims again."""

from __future__ import annotations

import io
import signal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from tests.conftest import wait_for
from tests.testapp.models import Execution
from workers.exceptions import IllegalTransition
from workers.models import Worker
from workers.pool import launcher, lifecycle
from workers.states import TaskState, WorkerState

from .helpers import enqueue, task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def worker(pk: int) -> Worker:
    return Worker.objects.get(pk=pk)


def started(key: str) -> bool:
    return Execution.objects.filter(key=f"{key}:start").exists()


def busy_worker(workers: Any, gate: Path, key: str) -> tuple[int, int]:
    """A real worker running a task that ends when ``gate`` exists: (worker id, task id)."""
    job = enqueue("wait_for_file", str(gate), key)
    workers.start()
    wait_for(lambda: started(key), timeout=20)
    worker_id = task(job.pk).worker_id
    assert worker_id is not None
    return worker_id, job.pk


def test_drain_then_undrain_and_the_same_worker_claims_the_next_task(workers, runtime_dir):
    gate = runtime_dir / "gate"
    worker_id, first = busy_worker(workers, gate, "first")
    launcher.drain(worker_id)
    wait_for(lambda: worker(worker_id).state == WorkerState.DRAINING, timeout=10)

    out = io.StringIO()
    call_command("workers", "undrain", str(worker_id), stdout=out)
    assert f"cancelled the drain of worker {worker_id}" in out.getvalue()
    undrained = worker(worker_id)
    assert undrained.state == WorkerState.RUNNING
    assert undrained.drain_requested_at is None

    gate.touch()  # the task ends only now, after the drain was cancelled
    wait_for(lambda: task(first).state == TaskState.SUCCEEDED, timeout=10)
    second = enqueue("record", "second")
    wait_for(lambda: task(second.pk).state == TaskState.SUCCEEDED, timeout=10)
    assert task(second.pk).worker_id == worker_id
    assert worker(worker_id).state == WorkerState.RUNNING
    assert workers.procs[0].poll() is None, "the process still serves"


def test_the_api_undrains_and_a_worker_drained_again_stops(workers, runtime_dir):
    gate = runtime_dir / "gate"
    worker_id, first = busy_worker(workers, gate, "again")
    admin = get_user_model().objects.create_superuser("op", "op@localhost", "pw")
    client = Client()
    client.force_login(admin)
    launcher.drain(worker_id)
    wait_for(lambda: worker(worker_id).state == WorkerState.DRAINING, timeout=10)

    response = client.post(f"/api/workers/{worker_id}/undrain/", content_type="application/json")
    assert response.status_code == 200
    assert response.json()["state"] == WorkerState.RUNNING
    assert LogEntry.objects.get().change_message == f"undrain worker {worker_id}"

    launcher.drain(worker_id)  # the second drain is not lost to the first one's cancel
    wait_for(lambda: worker(worker_id).state == WorkerState.DRAINING, timeout=10)
    later = enqueue("record", "never")
    gate.touch()
    wait_for(lambda: worker(worker_id).state == WorkerState.DEAD, timeout=15)
    assert task(first).state == TaskState.SUCCEEDED
    assert task(later.pk).state == TaskState.QUEUED
    assert worker(worker_id).failure_reason == "drained by operator"


def test_a_drain_after_sigterm_cannot_be_cancelled(workers, runtime_dir):
    gate = runtime_dir / "gate"
    worker_id, first = busy_worker(workers, gate, "term")
    workers.procs[0].send_signal(signal.SIGTERM)
    wait_for(lambda: worker(worker_id).state == WorkerState.DRAINING, timeout=10)

    with pytest.raises(CommandError, match="after a signal"):
        call_command("workers", "undrain", str(worker_id), stdout=io.StringIO())
    gate.touch()
    wait_for(lambda: worker(worker_id).state == WorkerState.DEAD, timeout=15)
    assert task(first).state == TaskState.SUCCEEDED


def test_undrain_refuses_what_is_not_an_operators_drain(crucible):
    running = Worker.objects.create(node="n", state=WorkerState.RUNNING)
    dead = Worker.objects.create(node="n", state=WorkerState.DEAD)
    aborting = Worker.objects.create(node="n", state=WorkerState.DRAINING,
                                     drain_requested_at=timezone.now(),
                                     abort_requested_at=timezone.now())

    with pytest.raises(IllegalTransition, match=f"worker {running.pk} is not draining"):
        launcher.undrain(running.pk)
    with pytest.raises(IllegalTransition, match="already DEAD"):
        launcher.undrain(dead.pk)
    with pytest.raises(IllegalTransition, match="being aborted"):
        launcher.undrain(aborting.pk)
    with pytest.raises(CommandError, match="no worker with id 999999"):
        call_command("workers", "undrain", "999999")
    assert worker(aborting.pk).state == WorkerState.DRAINING


def test_a_drain_cancelled_before_the_worker_showed_it_is_not_shown(crucible):
    asked = Worker.objects.create(node="n", state=WorkerState.RUNNING,
                                  drain_requested_at=timezone.now())

    launcher.undrain(asked.pk)
    # The worker had read the drain; showing it now must fail, telling it to go on serving.
    assert lifecycle.start_draining(asked.pk, asked=True) is False
    assert worker(asked.pk).state == WorkerState.RUNNING
    assert lifecycle.start_draining(asked.pk) is True, "a signal's drain needs no request"


def test_a_sigterm_after_an_operators_drain_is_not_undone_by_cancelling_it(workers, runtime_dir):
    gate = runtime_dir / "gate"
    worker_id, first = busy_worker(workers, gate, "both")
    launcher.drain(worker_id)
    wait_for(lambda: worker(worker_id).state == WorkerState.DRAINING, timeout=10)
    workers.procs[0].send_signal(signal.SIGTERM)
    later = enqueue("record", "never")

    launcher.undrain(worker_id)  # the operator's drain goes, the signal's stays
    gate.touch()
    assert workers.procs[0].wait(timeout=15) == 0
    assert worker(worker_id).state == WorkerState.DEAD
    assert "SIGTERM" in worker(worker_id).failure_reason
    assert task(first).state == TaskState.SUCCEEDED
    assert task(later.pk).state == TaskState.QUEUED


def test_a_drain_cancelled_and_asked_again_before_the_worker_looks_still_shows(workers,
                                                                                runtime_dir):
    """The worker sees only the end of undrain-then-drain (one transaction): still draining
    in its own mind, RUNNING in its row. It shows DRAINING again, and stops once idle."""
    from django.db import transaction

    gate = runtime_dir / "gate"
    worker_id, first = busy_worker(workers, gate, "twice")
    launcher.drain(worker_id)
    wait_for(lambda: worker(worker_id).state == WorkerState.DRAINING, timeout=10)

    with transaction.atomic():
        launcher.undrain(worker_id)
        launcher.drain(worker_id)

    wait_for(lambda: worker(worker_id).state == WorkerState.DRAINING, timeout=10)
    gate.touch()
    wait_for(lambda: worker(worker_id).state == WorkerState.DEAD, timeout=20)
    assert task(first).state == TaskState.SUCCEEDED

"""A second machine that starts workers under a live node's address is refused at start."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from django.db.models import Value
from django.db.models.functions import Now

from tests.conftest import wait_for, worker_env
from workers.models import Worker
from workers.pool import lifecycle, nodes
from workers.states import WorkerState

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]
STALLED_AFTER = 60.0


def _lab_1_elsewhere(heartbeat_age: float) -> Worker:
    row = Worker.objects.create(node="lab-1", state=WorkerState.RUNNING, host_id="other-machine")
    Worker.objects.filter(pk=row.pk).update(
        last_heartbeat=Now() - Value(dt.timedelta(seconds=heartbeat_age)))
    return row


def _env(runtime_dir: Path, **extra: str) -> dict[str, str]:
    return worker_env(runtime_dir, WORKER_NODE_ADDRESS="lab-1",
                      WORKER_STALLED_AFTER=str(STALLED_AFTER), **extra)


def _mine() -> Worker | None:
    return Worker.objects.filter(node="lab-1", host_id=nodes.host_id()).first()


def test_a_worker_is_refused_while_another_machine_runs_as_its_node(workers, runtime_dir):
    _lab_1_elsewhere(heartbeat_age=2)
    proc = workers.start(env=_env(runtime_dir))

    assert proc.wait(timeout=30) != 0
    output = workers.output(0)
    assert "'lab-1'" in output
    assert "WORKER_NODE_ADDRESS" in output
    assert _mine() is None, "a refused worker registers no row"


def test_a_spawned_worker_is_refused_and_its_row_failed(workers, runtime_dir):
    _lab_1_elsewhere(heartbeat_age=2)
    token, token_hash = lifecycle.new_token()
    row = Worker.objects.create(node="lab-1", spawned=True, launch_token_hash=token_hash)
    proc = workers.start("--worker-id", str(row.pk),
                         env=_env(runtime_dir, WORKER_LAUNCH_TOKEN=token))

    assert proc.wait(timeout=30) != 0
    row.refresh_from_db()
    assert row.state == WorkerState.FAILED
    assert "'lab-1'" in row.failure_reason
    assert row.host_id == nodes.host_id()


def test_a_worker_starts_when_the_other_machine_has_gone_quiet(workers, runtime_dir):
    _lab_1_elsewhere(heartbeat_age=STALLED_AFTER + 60)
    proc = workers.start(env=_env(runtime_dir))

    mine = wait_for(lambda: Worker.objects.filter(
        node="lab-1", host_id=nodes.host_id(), state=WorkerState.RUNNING).first(), timeout=30)
    assert mine.pid == proc.pid
    assert proc.poll() is None

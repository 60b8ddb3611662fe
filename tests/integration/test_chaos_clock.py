"""Clock skew: a node whose clock runs 5 minutes ahead leaves other nodes' tasks alone.

Every deadline is judged by the database's clock, so the skewed node's monitor tick must
not see another node's healthy lease as expired.
"""

from __future__ import annotations

import glob
import os
import time

import pytest
from django.db import connection

from tests.conftest import wait_for, worker_env
from tests.testapp.chaos import enqueue, spans_of
from tests.testapp.models import Span
from workers.models import Task, TaskAttempt, Worker
from workers.states import Outcome, TaskState, WorkerState

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

SKEW = 300.0  # seconds
LIBFAKETIME = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
LEASE_TTL = 6  # renewed every 2 s while the skewed node looks on


def _libfaketime() -> str:
    if not LIBFAKETIME:
        message = "libfaketime is not installed (apt-get install faketime)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return LIBFAKETIME[0]


@pytest.mark.skipif(
    "connection.vendor != 'postgresql'",
    reason="On SQLite the database's clock is each process's own clock (SQLite computes "
    "CURRENT_TIMESTAMP in the calling process, and libfaketime fakes that too), so a worker "
    "5 minutes ahead also sees the database 5 minutes ahead and the promise cannot hold; "
    "SQLite serves one machine with one clock",
)
def test_a_node_5_minutes_ahead_does_not_disturb_a_healthy_task(workers, runtime_dir):
    assert connection.vendor == "postgresql"
    preload = _libfaketime()
    gate = runtime_dir / "gate"
    workers.start(env=worker_env(runtime_dir, WORKER_LEASE_TTL=str(LEASE_TTL)))
    wait_for(lambda: Worker.objects.filter(state=WorkerState.RUNNING).exists(), timeout=30)
    healthy = enqueue("gated", "healthy", str(gate), 60)
    wait_for(lambda: Span.objects.filter(task_id=healthy.pk).exists())

    skewed_env = worker_env(
        runtime_dir,
        WORKER_LEASE_TTL=str(LEASE_TTL),
        LD_PRELOAD=preload,
        FAKETIME=f"+{SKEW:g}",
        FAKETIME_DONT_FAKE_MONOTONIC="1",  # a wall clock off, as on a real machine
    )
    workers.start("--node", "skewed-node", "--queue", "skewed", env=skewed_env)
    wait_for(lambda: Worker.objects.filter(node="skewed-node", state=WorkerState.RUNNING).exists(),
             timeout=30)
    probe = enqueue("short", "skewed-probe", 0, queue="skewed")
    wait_for(lambda: Task.objects.get(pk=probe.pk).state == TaskState.SUCCEEDED, timeout=15)
    ahead = spans_of(probe.pk)[0].started - time.time()
    assert ahead > SKEW - 60, f"the skewed worker's clock is only {ahead:.0f} s ahead"

    # Let the healthy task renew its lease at least once while the skewed node ticks.
    lease = Task.objects.get(pk=healthy.pk).lease_expires_at
    wait_for(lambda: Task.objects.get(pk=healthy.pk).lease_expires_at != lease, timeout=15)
    gate.touch()
    wait_for(lambda: Task.objects.get(pk=healthy.pk).is_finished, timeout=15)

    done = Task.objects.get(pk=healthy.pk)
    attempts = list(TaskAttempt.objects.filter(task=done).values_list("number", "outcome"))
    assert attempts == [(1, Outcome.SUCCEEDED)], f"the healthy task was disturbed: {attempts}"
    assert done.state == TaskState.SUCCEEDED and done.attempt == 1
    assert len(spans_of(healthy.pk)) == 1
    assert Worker.objects.filter(state=WorkerState.RUNNING).count() == 2

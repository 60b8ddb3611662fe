"""A frozen supervisor: its task runs again elsewhere, never at the same time as before.

The supervisor alone is stopped (SIGSTOP to its pid, not its group), so its executor keeps
running the task unless something that needs no supervisor code ends it before the lease
runs out. The other worker runs on the same machine (one SQLite host: a machine's tick
must not mistake a frozen worker for a live one that will record its task itself) or on
another machine (a node swapped out or cut off).
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.conftest import wait_for, worker_env
from tests.testapp.chaos import enqueue, spans_of, thaw_and_kill
from tests.testapp.models import Span
from workers.models import Task, Worker
from workers.states import TaskState, WorkerState

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

LEASE_TTL = 4


@pytest.mark.parametrize("node", ["same-machine", "another-machine"])
def test_a_frozen_supervisors_task_finishes_elsewhere_without_overlapping(workers, runtime_dir,
                                                                          node):
    env = worker_env(runtime_dir, WORKER_LEASE_TTL=str(LEASE_TTL))
    workers.start(*(["--node", "frozen-node"] if node == "another-machine" else []), env=env)
    wait_for(lambda: Worker.objects.filter(state=WorkerState.RUNNING).exists(), timeout=30)
    # Attempt 1 would show life for a minute; a later attempt for one second.
    job = enqueue("lively", "frozen", 60, 1)
    first = wait_for(lambda: Span.objects.filter(task_id=job.pk).first())
    holder = Worker.objects.get(pk=first.worker_id)
    assert holder.pid is not None
    os.kill(holder.pid, signal.SIGSTOP)
    workers.start(env=env)
    try:
        wait_for(lambda: Task.objects.get(pk=job.pk).state == TaskState.SUCCEEDED, timeout=40)
        spans = spans_of(job.pk)
    finally:
        thaw_and_kill(holder.pid)

    done = Task.objects.get(pk=job.pk)
    taker = done.worker
    assert taker is not None and taker.pk != holder.pk, "the task finished on the other worker"
    assert (taker.node == holder.node) == (node == "same-machine")
    assert [span.attempt for span in spans] == [1, 2], [(s.attempt, s.worker_id) for s in spans]
    frozen, rerun = spans
    assert frozen.ended is None, "the first execution was stopped, not run to its end"
    assert frozen.seen < rerun.started, (
        f"the first execution showed life {frozen.seen - rerun.started:.2f} s after the "
        f"second one started"
    )

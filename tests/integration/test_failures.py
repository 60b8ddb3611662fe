"""Killed workers, timeouts, retries, quarantine: no task is lost or run twice."""

from __future__ import annotations

import itertools
import os
import signal
import time

import pytest

from tests.conftest import wait_for
from tests.testapp.models import Execution
from workers.models import TaskAttempt, Worker
from workers.states import Outcome, TaskState, WorkerState

from .helpers import enqueue, running_workers, task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def test_sigkill_mid_task_finishes_on_another_worker_within_5s(workers):
    workers.start()
    workers.start()
    wait_for(lambda: len(running_workers()) == 2)
    job = enqueue("sleep_then_record", "k", 1.0)
    wait_for(lambda: Execution.objects.filter(key="k:start").exists())
    victim = task(job.pk).worker
    assert victim is not None and victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    killed_at = time.monotonic()

    wait_for(lambda: task(job.pk).state == TaskState.SUCCEEDED, timeout=5)
    assert time.monotonic() - killed_at < 5
    done = task(job.pk)
    assert done.worker_id != victim.pk
    outcomes = list(done.attempts.values_list("outcome", flat=True))
    assert outcomes == [Outcome.WORKER_LOST, Outcome.SUCCEEDED]
    assert Worker.objects.get(pk=victim.pk).state == WorkerState.FAILED
    assert Execution.objects.filter(key="k").count() == 1, "the killed attempt did not finish"


def test_timeout_stops_the_task_within_1s_and_the_worker_goes_on(workers):
    slow = enqueue("sleep_then_record", "slow", 30, timeout=1.0, max_attempts=1)
    after = enqueue("record", "after", priority=-1)
    workers.start("--batch")
    assert workers.wait_all() == [0]

    stopped = task(slow.pk)
    assert stopped.state == TaskState.FAILED
    attempt = stopped.attempts.get()
    assert attempt.outcome == Outcome.TIMED_OUT
    assert "Timed out after 1 s" in attempt.error
    assert attempt.finished_at is not None and attempt.started_at is not None
    ran_for = (attempt.finished_at - attempt.started_at).total_seconds()
    assert 1.0 <= ran_for < 2.0, f"stopped {ran_for - 1:.2f} s after the deadline"
    assert not Execution.objects.filter(key="slow").exists()
    assert task(after.pk).state == TaskState.SUCCEEDED
    assert task(after.pk).worker_id == stopped.worker_id


def test_retries_wait_longer_each_time_and_keep_every_error(workers):
    job = enqueue("fail_always", "boom", max_attempts=4, retry_backoff=0.2)
    workers.start("--batch")
    assert workers.wait_all() == [0]

    failed = task(job.pk)
    assert failed.state == TaskState.FAILED
    attempts = list(failed.attempts.order_by("number"))
    assert [a.outcome for a in attempts] == [Outcome.ERROR] * 4
    assert all("ValueError: boom" in a.error and "Traceback" in a.traceback for a in attempts)
    gaps = [
        (later.started_at - earlier.finished_at).total_seconds()
        for earlier, later in itertools.pairwise(attempts)
        if later.started_at and earlier.finished_at
    ]
    assert len(gaps) == 3
    # base 0.2 s doubling, with equal jitter: at least half of each step. The third wait's
    # floor (0.38 s) is above the most the first may be scheduled (0.2 s), so a backoff that
    # does not grow fails here. Gaps have no ceiling: a busy machine starts a due retry late
    # (one under load waited 0.92 s for a first retry due within 0.2 s).
    for number, gap in enumerate(gaps, start=1):
        assert gap >= 0.2 * 2 ** (number - 1) / 2 - 0.02


def test_a_task_that_crashes_its_process_is_retried_then_reported(workers):
    job = enqueue("crash_process", max_attempts=2, retry_backoff=0.05)
    workers.start("--batch")
    assert workers.wait_all() == [0]
    crashed = task(job.pk)
    assert crashed.state == TaskState.FAILED
    errors = list(crashed.attempts.values_list("outcome", "error"))
    assert [outcome for outcome, _ in errors] == [Outcome.CRASHED, Outcome.CRASHED]
    assert "killed by signal 9 (SIGKILL)" in errors[0][1]


def test_a_task_that_takes_its_worker_down_3_times_is_quarantined(workers):
    job = enqueue("kill_my_worker", max_attempts=10)
    for _ in range(4):
        workers.start()

    wait_for(lambda: task(job.pk).state == TaskState.FAILED, timeout=30)
    failed = task(job.pk)
    assert failed.quarantined_at is not None
    assert failed.error.startswith("Quarantined: took its worker down 3 times")
    assert failed.crash_count == 3
    assert Execution.objects.filter(key="kill").count() == 3
    assert TaskAttempt.objects.filter(task=failed, outcome=Outcome.WORKER_LOST).count() == 3
    assert len(running_workers()) == 1, "the fourth worker was spared"

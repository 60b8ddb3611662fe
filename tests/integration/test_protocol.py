"""The claim protocol's interleavings, played step by step against the real database.

Each test is one of the races the protocol issue found: a dependent linked while its
predecessor runs, a predecessor that succeeds twice, a cancel racing an attempt's end, a
claim whose reply was lost, a renewal racing a reclaim, a worker failed halfway.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from workers import queue
from workers.models import Task, Worker
from workers.pool import lifecycle, monitor
from workers.queue import clock
from workers.queue.hotpath import ClaimedTask
from workers.states import Outcome, TaskState, WorkerState

from .helpers import enqueue, task

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker(crucible):
    return Worker.objects.create(node="elsewhere", state=WorkerState.RUNNING)


def claim(worker: Worker) -> ClaimedTask:
    claimed = queue.claim_next(worker.pk, ["default"])
    assert claimed is not None
    return claimed


def succeed(token: ClaimedTask, value: object = None) -> None:
    queue.succeed(token, value, queue.Ending(Outcome.SUCCEEDED))


# -- dependency counts -------------------------------------------------------------------


def test_a_dependent_linked_while_its_predecessor_runs_is_released_by_its_success(worker):
    first = enqueue("add", 1, 2)
    running = claim(worker)
    later = enqueue("add", 3, 4, depends_on=[first.pk])
    assert task(later.pk).state == TaskState.WAITING

    following = queue.succeed_and_claim(running, 3, queue.Ending(Outcome.SUCCEEDED),
                                        ["default"])

    assert task(first.pk).state == TaskState.SUCCEEDED
    assert following is not None and following.id == later.pk, "released and claimed at once"


def test_a_predecessor_that_succeeds_again_is_not_counted_twice(worker):
    first = enqueue("add", 1, 2)
    second = enqueue("add", 3, 4, priority=-1)
    last = enqueue("add", 5, 6, depends_on=[first.pk, second.pk], priority=-2)
    succeed(claim(worker))  # first
    assert task(last.pk).pending_dependencies == 1

    queue.retry(first.pk)
    again = claim(worker)
    assert again.id == first.pk
    succeed(again)  # first, again: nothing more to count off

    after = task(last.pk)
    assert (after.state, after.pending_dependencies) == (TaskState.WAITING, 1)
    succeed(claim(worker))  # second
    assert (task(last.pk).state, task(last.pk).pending_dependencies) == (TaskState.QUEUED, 0)


def test_a_retried_predecessor_never_drives_a_count_below_zero(worker):
    first = enqueue("add", 1, 2)
    last = enqueue("add", 5, 6, depends_on=[first.pk], priority=-1)
    succeed(claim(worker))
    for _ in range(2):
        queue.retry(first.pk)
        token = claim(worker)
        assert token.id == first.pk, "the released dependent waits behind its predecessor"
        succeed(token)
    assert task(last.pk).pending_dependencies == 0


# -- cancel ------------------------------------------------------------------------------


def _task_updates(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries
            if q["sql"].startswith('UPDATE "workers_task"')]


def test_cancel_decides_in_one_statement(worker):
    queued = enqueue("add", 1, 2)
    with CaptureQueriesContext(connection) as queries:
        queue.cancel(queued.pk)
    assert len(_task_updates(queries)) == 1
    assert task(queued.pk).state == TaskState.CANCELLED


def test_cancel_of_a_running_task_flags_it_and_its_ending_cancels_it(worker):
    job = enqueue("add", 1, 2, max_attempts=5)
    token = claim(worker)
    with CaptureQueriesContext(connection) as queries:
        queue.cancel(job.pk)
    assert len(_task_updates(queries)) == 1
    flagged = task(job.pk)
    assert flagged.state == TaskState.RUNNING and flagged.cancel_requested_at is not None

    # The attempt ends with an error as the flag lands: it is cancelled, not retried.
    assert queue.fail(token, queue.Ending(Outcome.ERROR, "boom")) == TaskState.CANCELLED


def test_cancel_of_a_task_between_attempts_cancels_it(worker):
    job = enqueue("add", 1, 2, max_attempts=5, retry_backoff=3600)
    queue.fail(claim(worker), queue.Ending(Outcome.ERROR, "boom"))
    assert task(job.pk).state == TaskState.QUEUED  # waiting for its retry
    assert queue.cancel(job.pk).state == TaskState.CANCELLED


# -- attempts that never began -----------------------------------------------------------


def test_a_claim_whose_reply_was_lost_does_not_use_up_an_attempt(worker):
    job = enqueue("add", 1, 2, max_attempts=1)
    claim(worker)  # committed, but the worker never heard of it

    assert queue.release_unheld(worker.pk) == [job.pk]
    back = task(job.pk)
    assert (back.state, back.attempt, back.worker_id) == (TaskState.QUEUED, 0, None)
    token = claim(worker)
    assert token.attempt == 1
    succeed(token, 3)
    assert task(job.pk).state == TaskState.SUCCEEDED


def test_release_keeps_the_tasks_a_worker_does_hold(worker):
    held = enqueue("add", 1, 2)
    lost = enqueue("add", 3, 4)
    kept = claim(worker)
    claim(worker)
    assert queue.release_unheld(worker.pk, keep={kept.id}) == [lost.pk]
    assert task(held.pk).state == TaskState.RUNNING


# -- leases and reclaims -----------------------------------------------------------------


def test_a_lease_is_set_from_the_databases_clock_not_the_workers(worker, monkeypatch):
    enqueue("add", 1, 2)
    skewed = timezone.now() + timedelta(hours=1)
    monkeypatch.setattr(timezone, "now", lambda: skewed)  # a node whose clock runs ahead
    token = claim(worker)
    monkeypatch.undo()

    lease = task(token.id).lease_expires_at
    assert lease is not None
    expected = clock.now() + timedelta(seconds=worker_lease_ttl())
    assert abs((lease - expected).total_seconds()) < 5


def worker_lease_ttl() -> float:
    from workers import conf

    return conf.get().lease_ttl


def test_a_renewal_that_lands_before_the_reclaim_wins(worker):
    job = enqueue("add", 1, 2)
    token = claim(worker)
    Task.objects.filter(pk=job.pk).update(lease_expires_at=clock.ago(1))
    seen = task(job.pk)  # the monitor lists it as expired...
    Task.objects.filter(pk=job.pk).update(lease_expires_at=clock.later(60))  # ...renewed

    ending = queue.Ending(Outcome.LEASE_EXPIRED, "lease expired")
    assert queue.reclaim(seen, ending, expired_only=True) is None
    assert queue.renew(token) is True
    assert task(job.pk).state == TaskState.RUNNING


def test_an_expired_lease_is_not_renewed(worker):
    job = enqueue("add", 1, 2)
    token = claim(worker)
    Task.objects.filter(pk=job.pk).update(lease_expires_at=clock.ago(1))
    assert queue.renew(token) is False


def test_the_tick_reclaims_a_running_task_whose_worker_has_ended(worker):
    job = enqueue("add", 1, 2)
    claim(worker)
    Worker.objects.filter(pk=worker.pk).update(state=WorkerState.FAILED)

    assert job.pk in monitor.tick().reclaimed
    back = task(job.pk)
    assert back.state == TaskState.QUEUED
    assert list(back.attempts.values_list("outcome", flat=True)) == [Outcome.WORKER_LOST]


def test_failing_a_worker_and_requeuing_its_tasks_is_one_transaction(worker, monkeypatch):
    job = enqueue("add", 1, 2)
    claim(worker)

    def crash(*args: object) -> list[int]:
        raise RuntimeError("the tick died here")

    monkeypatch.setattr(queue, "reclaim_worker", crash)
    with pytest.raises(RuntimeError):
        lifecycle.fail(worker, "gone", Outcome.WORKER_LOST)
    assert Worker.objects.get(pk=worker.pk).state == WorkerState.RUNNING, "rolled back"
    monkeypatch.undo()

    assert lifecycle.fail(worker, "gone", Outcome.WORKER_LOST) == [job.pk]
    assert Worker.objects.get(pk=worker.pk).state == WorkerState.FAILED
    assert task(job.pk).state == TaskState.QUEUED


# -- a task's data at the boundary -------------------------------------------------------


def test_text_the_database_refuses_is_stored_replaced_with_a_note(worker):
    job = enqueue("add", 1, 2, max_attempts=1)
    token = claim(worker)
    assert queue.report_progress(token, 0.5, "half\x00way")
    assert task(job.pk).progress_message.startswith("half\ufffdway")

    ending = queue.Ending(Outcome.ERROR, "ValueError: a\x00b", "Traceback \ud800",
                          log_tail="printed \x00\n", exception_class="builtins.ValueError")
    assert queue.fail(token, ending) == TaskState.FAILED

    attempt = task(job.pk).attempts.get()
    assert attempt.error.startswith("ValueError: a\ufffdb")
    assert "replaced 1 character the database cannot store" in attempt.error
    assert attempt.traceback.startswith("Traceback \ufffd")
    assert "printed \ufffd" in attempt.log_tail


@pytest.mark.parametrize("value", [{"s": "a\x00b"}, "\ud800", ["ok", {"k\x00": 1}]])
def test_a_result_the_database_cannot_store_fails_its_attempt_with_the_reason(worker, value):
    job = enqueue("add", 1, 2, max_attempts=1)
    succeed(claim(worker), value)
    failed = task(job.pk)
    assert failed.state == TaskState.FAILED and failed.result is None
    assert "result cannot be stored" in failed.error
    assert "NUL byte or a lone surrogate" in failed.error


def test_a_workers_log_tail_with_a_nul_byte_does_not_stop_the_tick(worker, crucible):
    job = enqueue("add", 1, 2)
    claim(worker)
    Worker.objects.filter(pk=worker.pk).update(node=crucible.node_address, pid=2**22 + 7,
                                               process_started_at=1.0)
    log = crucible.log_dir / f"worker_{worker.pk}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"before\x00after \xed\xa0\x80\n")

    report = monitor.tick()

    assert report.gone == [worker.pk] and report.reclaimed == [job.pk]
    gone = Worker.objects.get(pk=worker.pk)
    assert gone.state == WorkerState.FAILED and "before\ufffdafter" in gone.log_tail


@pytest.mark.integration
def test_no_tick_reclaims_a_task_that_a_live_worker_of_its_own_node_holds(workers):
    from tests.conftest import wait_for
    from tests.testapp.models import Execution

    job = enqueue("sleep_then_record", "held", 30)
    workers.start()
    wait_for(lambda: Execution.objects.filter(key="held:start").exists())
    holder = task(job.pk)
    # As after an outage longer than the lease: the database says the lease has ended.
    Task.objects.filter(pk=job.pk).update(lease_expires_at=clock.ago(1))

    report = monitor.tick()

    assert job.pk not in report.reclaimed
    still = task(job.pk)
    assert (still.state, still.attempt, still.worker_id) == (
        TaskState.RUNNING, holder.attempt, holder.worker_id)
    assert not still.attempts.exists()


def test_a_requeued_task_keeps_no_progress_or_worker_of_its_last_attempt(worker):
    job = enqueue("add", 1, 2, max_attempts=3, retry_backoff=3600)
    token = claim(worker)
    queue.report_progress(token, 0.14, "step 14")
    assert queue.fail(token, queue.Ending(Outcome.ERROR, "boom")) == TaskState.QUEUED

    back = task(job.pk)
    assert (back.progress, back.progress_message, back.worker_id) == (None, "", None)
    assert back.attempts.get().worker_id == worker.pk

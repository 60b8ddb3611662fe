"""Fencing tokens: a worker that lost its attempt can never overwrite the newer one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from workers import queue
from workers.exceptions import LostAttempt
from workers.models import Task, Worker
from workers.states import Outcome, TaskState

from .helpers import enqueue

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_late_write_from_a_reclaimed_attempt_is_rejected(crucible):
    job = enqueue("add", 1, 2)
    first, second = Worker.objects.create(node="a"), Worker.objects.create(node="b")

    old = queue.claim_next(first.pk, ["default"])
    assert old is not None and old.attempt == 1
    Task.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert queue.reclaim_expired_leases() == [job.pk]

    new = queue.claim_next(second.pk, ["default"])
    assert new is not None and new.attempt == 2
    queue.succeed(new, "newer", queue.Ending(Outcome.SUCCEEDED))

    with pytest.raises(LostAttempt):
        queue.succeed(old, "late", queue.Ending(Outcome.SUCCEEDED))
    with pytest.raises(LostAttempt):
        queue.fail(old, queue.Ending(Outcome.ERROR, "late error"))
    assert queue.report_progress(old, 0.5, "late") is False
    assert queue.renew(old) is False

    final = Task.objects.get(pk=job.pk)
    assert (final.state, final.result, final.worker_id) == (TaskState.SUCCEEDED, "newer", second.pk)
    outcomes = list(final.attempts.values_list("number", "outcome"))
    assert outcomes == [(1, Outcome.LEASE_EXPIRED), (2, Outcome.SUCCEEDED)]


def test_a_task_is_claimed_once_even_when_two_workers_ask(crucible):
    enqueue("add", 1, 2)
    a, b = Worker.objects.create(node="a"), Worker.objects.create(node="b")
    claims = [queue.claim_next(a.pk, ["default"]), queue.claim_next(b.pk, ["default"])]
    assert sum(claim is not None for claim in claims) == 1


def test_claims_skip_other_queues_and_future_tasks(crucible):
    later = timezone.now() + timedelta(hours=1)
    enqueue("add", 1, 2, queue="other")
    enqueue("add", 1, 2, run_after=later)
    due = enqueue("add", 3, 4)
    worker = Worker.objects.create(node="a")
    claimed = queue.claim_next(worker.pk, ["default"])
    assert claimed is not None and claimed.id == due.pk
    assert queue.claim_next(worker.pk, ["default"]) is None


def test_a_late_success_and_claim_is_rejected_and_claims_nothing(crucible):
    """The busy worker's one-commit path (success, attempt row, next claim) is fenced too:
    the late result is refused and the next task stays queued for someone else."""
    job = enqueue("add", 1, 2)
    first, second = Worker.objects.create(node="a"), Worker.objects.create(node="b")
    old = queue.claim_next(first.pk, ["default"])
    assert old is not None
    Task.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert queue.reclaim_expired_leases() == [job.pk]
    new = queue.claim_next(second.pk, ["default"])
    assert new is not None and new.attempt == 2
    waiting = enqueue("add", 3, 4)

    with pytest.raises(LostAttempt):
        queue.succeed_and_claim(old, "late", queue.Ending(Outcome.SUCCEEDED), ["default"])

    assert Task.objects.get(pk=waiting.pk).state == TaskState.QUEUED
    final = Task.objects.get(pk=job.pk)
    assert (final.state, final.worker_id, final.result) == (TaskState.RUNNING, second.pk, None)
    assert list(final.attempts.values_list("number", flat=True)) == [1]


def test_one_success_and_claim_records_the_attempt_and_hands_over_the_next_task(crucible):
    done, following = enqueue("add", 1, 2), enqueue("add", 3, 4, priority=-1)
    worker = Worker.objects.create(node="a")
    token = queue.claim_next(worker.pk, ["default"])
    assert token is not None and token.id == done.pk

    claimed = queue.succeed_and_claim(token, {"sum": 3}, queue.Ending(Outcome.SUCCEEDED,
                                                                      peak_rss_bytes=4096),
                                      ["default"])

    assert claimed is not None and (claimed.id, claimed.attempt) == (following.pk, 1)
    finished = Task.objects.get(pk=done.pk)
    assert (finished.state, finished.result, finished.peak_rss_bytes) == (
        TaskState.SUCCEEDED, {"sum": 3}, 4096)
    attempt = finished.attempts.get()
    assert (attempt.number, attempt.outcome, attempt.worker_id) == (1, Outcome.SUCCEEDED,
                                                                    worker.pk)
    assert attempt.finished_at == finished.finished_at
    assert Task.objects.get(pk=following.pk).state == TaskState.RUNNING

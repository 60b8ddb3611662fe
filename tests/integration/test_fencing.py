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

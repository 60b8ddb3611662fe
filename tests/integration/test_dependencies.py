"""Tasks that wait for others: queued once every predecessor succeeded, failed if one fails."""

from __future__ import annotations

import pytest

from tests.testapp.models import Execution
from workers import queue
from workers.exceptions import InvalidTaskSpec
from workers.states import TaskState

from .helpers import enqueue, task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def test_a_task_runs_after_all_its_predecessors_succeeded(workers):
    first = enqueue("record", "first", priority=-5)
    second = enqueue("record", "second", priority=-5)
    last = enqueue("record", "last", priority=100, depends_on=[first.pk, second.pk])
    assert task(last.pk).state == TaskState.WAITING
    workers.start("--batch")
    assert workers.wait_all() == [0]

    order = list(Execution.objects.order_by("at").values_list("key", flat=True))
    assert order == ["first", "second", "last"]
    assert task(last.pk).state == TaskState.SUCCEEDED


def test_a_failed_predecessor_fails_its_dependents_in_turn(workers):
    broken = enqueue("fail_always", "no", max_attempts=1)
    middle = enqueue("record", "middle", depends_on=[broken.pk])
    end = enqueue("record", "end", depends_on=[middle.pk])
    workers.start("--batch")
    assert workers.wait_all() == [0]

    assert task(middle.pk).state == TaskState.FAILED
    assert task(middle.pk).error == f"Not run: upstream task {broken.pk} did not succeed."
    assert task(end.pk).state == TaskState.FAILED
    assert not Execution.objects.filter(key__in=["middle", "end"]).exists()


def test_depending_on_an_unknown_or_failed_task_is_refused(crucible):
    with pytest.raises(InvalidTaskSpec, match="depends_on: no task with id 999999"):
        enqueue("record", "x", depends_on=[999999])
    gone = enqueue("record", "gone")
    queue.cancel(gone.pk)
    with pytest.raises(InvalidTaskSpec, match="already cancelled"):
        enqueue("record", "x", depends_on=[gone.pk])

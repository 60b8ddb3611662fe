"""A task's counts and sizes are never negative: Django's validation refuses them.

The database no longer checks them (migration 0017: its CHECKs cost PostgreSQL's hot
statement an eighth of its time), so the validation is what a form or the admin meets.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from workers.models import Task, TaskAttempt

pytestmark = pytest.mark.django_db

COUNTS = ["max_attempts", "attempt", "attempt_base", "memory_mb", "memory_estimate_mb",
          "memory_estimate_runs", "memory_limit_mb", "cpus", "crash_count"]


@pytest.mark.parametrize("field", COUNTS)
def test_a_negative_count_of_a_task_is_refused_by_validation(field):
    task = Task(func_path="tests.testapp.tasks.noop", timeout=60, **{field: -1})

    with pytest.raises(ValidationError) as refused:
        task.full_clean(exclude=["worker", "node", "run"])

    assert field in refused.value.message_dict
    assert "greater than or equal to 0" in " ".join(refused.value.message_dict[field])


@pytest.mark.parametrize("field", ["number", "memory_estimate_mb", "memory_limit_mb"])
def test_a_negative_count_of_an_attempt_is_refused_by_validation(field):
    values = {"number": 1, **{field: -1}}
    attempt = TaskAttempt(task_id=1, outcome="SUCCEEDED", finished_at="2026-12-01T00:00Z",
                          **values)

    with pytest.raises(ValidationError) as refused:
        attempt.full_clean(exclude=["task", "worker"])

    assert field in refused.value.message_dict


def test_the_dependency_count_keeps_its_check_in_the_database():
    from django.db import IntegrityError, transaction

    task = Task.objects.create(func_path="tests.testapp.tasks.noop", timeout=60)

    with pytest.raises(IntegrityError), transaction.atomic():
        Task.objects.filter(pk=task.pk).update(pending_dependencies=-1)

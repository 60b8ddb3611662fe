"""Migration 0016: a profile that existed before keeps its learned estimate, now read by
the enqueue's INSERT from the profile's own columns."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from workers.models import MemoryProfile

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("workers", "0015_attempt_task_index_in_unique")
AFTER = ("workers", "0016_profile_keeps_its_estimate")


@pytest.fixture(autouse=True)
def _latest_after() -> Iterator[None]:
    """The tests after this one find every migration applied, as before it."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_existing_profiles_get_the_estimate_their_samples_give():
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    old = executor.loader.project_state([BEFORE]).apps.get_model("workers", "MemoryProfile")
    old.objects.create(func_path="lab.learned", runs=4, samples=[[None, 100.0]] * 4)
    old.objects.create(func_path="lab.too_few", runs=2, samples=[[None, 100.0]] * 2)

    executor = MigrationExecutor(connection)
    executor.migrate([AFTER])

    estimates = dict(MemoryProfile.objects.values_list("func_path", "estimate_mb"))
    assert estimates == {"lab.learned": 110, "lab.too_few": None}
    assert MemoryProfile.objects.get(func_path="lab.learned").estimate_runs == 4

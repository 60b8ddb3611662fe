"""A node's budget: the arithmetic, and the worker's writes of it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from workers.conf import WorkerSettings
from workers.models import Node
from workers.pool import budget

MB = 1024 * 1024
GB = 1024 * MB


def settings_(node_memory_mb: int | None = None, node_cpus: int | None = None
              ) -> WorkerSettings:
    return WorkerSettings(memory_guard_mb=2048, node_memory_mb=node_memory_mb,
                          node_cpus=node_cpus)


def test_the_setting_is_the_budget() -> None:
    found = budget.compute(settings_(node_memory_mb=1000, node_cpus=3), 64 * GB, GB, 0, 8)

    assert found == budget.Budget(memory_mb=1000, cpus=3, total_mb=64 * 1024, measured=False,
                                  ceiling_mb=1000)


def test_unset_it_is_available_memory_above_the_guard_and_the_cores() -> None:
    found = budget.compute(settings_(), 64 * GB, 20 * GB, 0, 8)

    assert found == budget.Budget(memory_mb=18 * 1024, cpus=8, total_mb=64 * 1024,
                                  measured=True, ceiling_mb=62 * 1024)


def test_running_tasks_own_use_does_not_shrink_it() -> None:
    assert budget.compute(settings_(), 64 * GB, 12 * GB, 8 * GB, 8).memory_mb == 18 * 1024


def test_never_above_physical_memory_minus_the_guard() -> None:
    assert budget.compute(settings_(), 16 * GB, 15 * GB, 8 * GB, 8).memory_mb == 14 * 1024


def test_never_below_zero() -> None:
    assert budget.compute(settings_(), 16 * GB, GB, 0, 8).memory_mb == 0


def test_megabytes_reads_like_the_panel() -> None:
    assert (budget.megabytes(600), budget.megabytes(1000), budget.megabytes(8192)) == (
        "600 MB", "1,000 MB", "8.0 GB")


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch, settings: Any, crucible: Any) -> dict[str, int]:
    settings.CRUCIBLE = dataclasses.replace(settings.CRUCIBLE, memory_guard_mb=2048,
                                            node_memory_mb=None, node_cpus=None)
    memory = {"total": 64 * GB, "available": 20 * GB}
    monkeypatch.setattr(budget, "_memory", lambda: (memory["total"], memory["available"]))
    monkeypatch.setattr(budget, "_cores", lambda: 6)
    monkeypatch.setattr(budget, "_local", budget._Local())
    return memory


@pytest.mark.django_db
def test_a_worker_registers_its_node_once_and_claims_for_it(machine: dict[str, int]) -> None:
    budget.register("node-x")
    machine["available"] = 10 * GB
    budget.register("node-x")

    row = Node.objects.get(name="node-x")
    assert (row.memory_mb, row.cpus, row.total_mb, row.measured, row.ceiling_mb) == (
        8 * 1024, 6, 64 * 1024, True, 62 * 1024)
    assert budget.local_node() == "node-x"


@pytest.mark.django_db
def test_the_budget_is_written_again_only_when_free_memory_moved(
    machine: dict[str, int], django_assert_num_queries: Any
) -> None:
    budget.register("node-x")

    machine["available"] -= 63 * MB
    with django_assert_num_queries(0):
        assert not budget.refresh()
    machine["available"] -= 2 * MB
    assert budget.refresh()

    assert Node.objects.get(name="node-x").memory_mb == 18 * 1024 - 65


@pytest.mark.django_db
def test_a_set_budget_is_never_re_read(machine: dict[str, int], settings: Any) -> None:
    settings.CRUCIBLE = dataclasses.replace(settings.CRUCIBLE, node_memory_mb=1000)
    budget.register("node-x")
    machine["available"] = GB

    assert not budget.refresh()
    assert Node.objects.get(name="node-x").memory_mb == 1000

"""A task larger than every node's whole budget is refused at submission, naming both."""

from __future__ import annotations

import pytest

from workers.models import Node, Task

from ..helpers import TASKS
from .conftest import NO_STATIC_ROOT, worker_row

pytestmark = [pytest.mark.django_db, NO_STATIC_ROOT]

RECORD = f"{TASKS}.record"


@pytest.fixture
def nodes(crucible):
    Node.objects.create(name="lab-node-1", memory_mb=4096, cpus=8)
    Node.objects.create(name="lab-node-2", memory_mb=2048, cpus=16)


def test_submit_refuses_more_memory_than_any_node_naming_both(admin_api, allowlist, nodes):
    response = admin_api.post("/api/tasks/", {"func_path": RECORD, "args": ["x"],
                                              "memory_mb": 6144})

    assert response.status_code == 400, response.json()
    assert response.json()["detail"] == {"field": "memory_mb"}
    assert "needs 6.0 GB (declared)" in response.json()["error"]
    assert "the largest is 4.0 GB (lab-node-1)" in response.json()["error"]
    assert not Task.objects.exists()


def test_submit_refuses_more_cpus_than_any_node(admin_api, allowlist, nodes):
    response = admin_api.post("/api/tasks/", {"func_path": RECORD, "args": ["x"], "cpus": 17})

    assert response.status_code == 400, response.json()
    assert response.json()["detail"] == {"field": "cpus"}
    assert "needs 17 CPUs, more than any node has: the most is 16 (lab-node-2)" in (
        response.json()["error"])
    assert not Task.objects.exists()


def test_bulk_submit_refuses_a_task_larger_than_any_node_naming_it(admin_api, allowlist, nodes):
    fits = {"func_path": RECORD, "args": ["x"], "memory_mb": 1024}
    too_large = {"func_path": RECORD, "args": ["y"], "memory_mb": 6144}
    response = admin_api.post("/api/tasks/bulk/", {"tasks": [fits, too_large]})

    assert response.status_code == 400, response.json()
    assert response.json()["detail"] == {"field": "tasks[1].memory_mb"}
    assert "the largest is 4.0 GB (lab-node-1)" in response.json()["error"]
    assert not Task.objects.exists()

    forced = admin_api.post("/api/tasks/bulk/", {"tasks": [fits, {**too_large, "force": True}]})
    assert forced.status_code == 201, forced.json()
    assert Task.objects.count() == 2


def test_force_queues_it_anyway_with_its_estimate(admin_api, allowlist, nodes):
    response = admin_api.post("/api/tasks/", {"func_path": RECORD, "args": ["x"],
                                              "memory_mb": 6144, "cpus": 2,
                                              "memory_limit_mb": 7000, "force": True})

    assert response.status_code == 201, response.json()
    task = Task.objects.get(pk=response.json()["id"])
    assert (task.memory_estimate_mb, task.memory_source, task.cpus, task.memory_limit_mb) == (
        6144, "declared", 2, 7000)
    detail = admin_api.get(f"/api/tasks/{task.pk}/").json()
    assert (detail["memory_estimate_mb"], detail["memory_source"], detail["cpus"]) == (
        6144, "declared", 2)


def test_a_node_short_of_memory_for_now_is_counted_at_its_most(admin_api, allowlist, nodes):
    Node.objects.filter(name="lab-node-1").update(memory_mb=1024, ceiling_mb=8192)

    response = admin_api.post("/api/tasks/", {"func_path": RECORD, "args": ["x"],
                                              "memory_mb": 6144})

    assert response.status_code == 201, "it fits once memory comes back"


def test_only_nodes_with_workers_count_when_there_are_any(admin_api, allowlist, nodes):
    worker_row("lab-node-2")

    refused = admin_api.post("/api/tasks/", {"func_path": RECORD, "args": ["x"],
                                             "memory_mb": 3000})

    assert refused.status_code == 400
    assert "the largest is 2.0 GB (lab-node-2)" in refused.json()["error"]


def test_a_task_declaring_nothing_is_never_refused_for_the_default(admin_api, allowlist,
                                                                   settings, nodes):
    response = admin_api.post("/api/tasks/", {"func_path": RECORD, "args": ["x"]})

    assert response.status_code == 201
    task = Task.objects.get(pk=response.json()["id"])
    assert task.memory_source == "default"
    assert task.memory_estimate_mb == settings.CRUCIBLE.memory_per_task_mb


def test_a_limit_below_the_declared_memory_is_refused(admin_api, allowlist, nodes):
    response = admin_api.post("/api/tasks/", {"func_path": RECORD, "args": ["x"],
                                              "memory_mb": 1000, "memory_limit_mb": 500})

    assert response.status_code == 400
    assert response.json()["detail"] == {"field": "memory_limit_mb"}

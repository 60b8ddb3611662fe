"""The panel's capacity line: memory committed to running tasks, measured, needed next,
and why a queued task waits."""

from __future__ import annotations

import dataclasses

import pytest
from django.contrib.auth.models import User

from workers.models import Node, Task, Worker
from workers.states import TaskState, WorkerState

pytestmark = [pytest.mark.django_db,
              pytest.mark.filterwarnings("ignore:No directory at:UserWarning")]

PAGE = "/admin/worker-status/"
FRAGMENT = "/htmx/workers/status/"
NODE = "lab-node-1"


def test_the_panel_says_what_tasks_commit_and_why_one_waits(admin_client, settings, crucible):
    settings.CRUCIBLE = dataclasses.replace(settings.CRUCIBLE, node_address=NODE,
                                            node_memory_mb=12288)
    busy = Worker.objects.create(node=NODE, state=WorkerState.RUNNING, task_rss_bytes=2**31,
                                 queues=["default"])
    node = Node.objects.create(name=NODE, memory_mb=12288, cpus=8)
    Task.objects.create(func_path="m.run", timeout=60.0, state=TaskState.RUNNING, worker=busy,
                        node=node, memory_estimate_mb=9114, memory_source="declared")
    waiting = Task.objects.create(func_path="m.big", timeout=60.0, memory_mb=8192,
                                  memory_estimate_mb=8192, memory_source="declared")

    for page in (admin_client.get(PAGE), admin_client.get(FRAGMENT, HTTP_HX_REQUEST="true")):
        html = page.content.decode()
        assert ("Tasks' memory: 8.9 GB of 12.0 GB committed to 1 running task, "
                "2.0 GB measured; next task needs 8.0 GB "
                f"(task {waiting.pk} (m.big, declared))") in html
        assert f"task {waiting.pk} waits: needs 8.0 GB, 3.1 GB free on {NODE}" in html


def test_the_status_document_says_the_same(settings, crucible):
    from django.test import Client

    from .test_api.conftest import Api

    settings.CRUCIBLE = dataclasses.replace(settings.CRUCIBLE, node_address=NODE,
                                            node_memory_mb=12288)
    busy = Worker.objects.create(node=NODE, state=WorkerState.RUNNING, task_rss_bytes=2**31)
    node = Node.objects.create(name=NODE, memory_mb=12288, cpus=8)
    Task.objects.create(func_path="m.run", timeout=60.0, state=TaskState.RUNNING, worker=busy,
                        node=node, memory_estimate_mb=9114, memory_source="declared")
    waiting = Task.objects.create(func_path="m.big", timeout=60.0, memory_estimate_mb=8192,
                                  memory_source="declared")
    client = Client()
    client.force_login(User.objects.create_superuser("boss", password="pw"))

    body = Api(client).get("/api/workers/status/").json()

    assert body["tasks_memory"] == {
        "budget_mb": 12288, "committed_mb": 9114, "running": 1, "measured": 2**31,
        "next_task_mb": 8192, "next_task_id": waiting.pk,
        "waiting": f"task {waiting.pk} waits: needs 8.0 GB, 3.1 GB free on {NODE}",
    }

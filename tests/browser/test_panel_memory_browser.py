"""What the operator reads on the panel about tasks' memory, in a real Chromium: what
running tasks committed and use, what the next task needs, and why one waits."""

from __future__ import annotations

import dataclasses

import pytest
from playwright.sync_api import expect

from workers.models import Node, Task, Worker
from workers.states import TaskState, WorkerState

from .conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)

NODE = "lab-node-1"


def test_the_panel_says_why_a_queued_task_waits(page, settings):
    settings.CRUCIBLE = dataclasses.replace(settings.CRUCIBLE, node_address=NODE,
                                            node_memory_mb=12288)
    busy = Worker.objects.create(node=NODE, state=WorkerState.RUNNING, task_rss_bytes=2**31,
                                 queues=["default"])
    node = Node.objects.create(name=NODE, memory_mb=12288, cpus=8)
    Task.objects.create(func_path="m.run", timeout=60.0, state=TaskState.RUNNING, worker=busy,
                        node=node, memory_estimate_mb=9114, memory_source="declared")
    waiting = Task.objects.create(func_path="m.big", timeout=60.0, memory_estimate_mb=8192,
                                  memory_source="declared")

    log_in(page, "/admin/worker-status/")

    line = page.locator("#cr-tasks-memory")
    expect(line).to_be_visible()
    expect(line).to_contain_text("8.9 GB of 12.0 GB committed to 1 running task, 2.0 GB "
                                 "measured; next task needs 8.0 GB")
    expect(page.locator("#cr-waiting")).to_have_text(
        f"task {waiting.pk} waits: needs 8.0 GB, 3.1 GB free on {NODE}")

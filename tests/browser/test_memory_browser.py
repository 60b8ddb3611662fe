"""What an operator reads of a running task's memory, in a real Chromium: its estimate,
where the estimate came from, and what its processes use against it, on the task's page
and on the panel's worker card."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from workers.models import Task, Worker
from workers.states import TaskState, WorkerState

from .conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)

MB = 1024 * 1024


def running_task() -> Task:
    now = timezone.now()
    worker = Worker.objects.create(
        state=WorkerState.RUNNING, node="elsewhere", pid=4321, queues=["default"],
        started_at=now - timedelta(minutes=1), last_heartbeat=now, rss_bytes=400 * MB,
        task_rss_bytes=250 * MB,
    )
    return Task.objects.create(
        func_path="app.jobs.big", timeout=60, state=TaskState.RUNNING, worker=worker,
        attempt=1, last_attempted_at=now - timedelta(seconds=20), memory_estimate_mb=312,
        memory_source="learned", memory_estimate_runs=3, memory_limit_mb=500,
    )


def test_a_running_tasks_memory_against_its_estimate(page):
    task = running_task()
    log_in(page, f"/admin/workers/task/{task.pk}/change/")
    memory = page.locator(".field-memory")
    expect(memory).to_contain_text("estimate 312 MB (learned from 3 runs)")
    expect(memory).to_contain_text("limit 500 MB")
    expect(memory).to_contain_text("using 250 MB of 312 MB (80 %) now")

    page.goto("/admin/worker-status/")
    card = page.locator(".cr-task-memory")
    expect(card).to_have_text("Memory 250 MB of 312 MB (80 %), estimate 312 MB "
                              "(learned from 3 runs)")

"""Pausing and resuming queues through the API, and listing them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.utils import timezone

from workers.models import PausedQueue
from workers.queue import pausing
from workers.states import TaskState

from .conftest import NO_STATIC_ROOT, task_row, token_api

pytestmark = [pytest.mark.django_db, NO_STATIC_ROOT]


def test_pause_list_and_resume_a_queue(admin_api, crucible):
    task_row(TaskState.QUEUED, queue="sims")
    task_row(TaskState.QUEUED, queue="sims", run_after=timezone.now() + timedelta(hours=1))
    task_row(TaskState.RUNNING, queue="default")

    paused = admin_api.post("/api/queues/pause/", {"queue": "sims"}).json()

    assert paused["paused"] is True and paused["name"] == "sims"
    assert (paused["queued"], paused["scheduled"], paused["running"]) == (1, 1, 0)
    assert paused["paused_by"] == User.objects.get().username and paused["paused_at"]
    assert pausing.is_paused("sims")
    listed = {q["name"]: q for q in admin_api.get("/api/queues/").json()["queues"]}
    assert set(listed) == {"default", "sims"}
    assert listed["sims"]["paused"] and not listed["default"]["paused"]
    assert listed["default"]["running"] == 1

    resumed = admin_api.post("/api/queues/resume/", {"queue": "sims"}).json()

    assert resumed["paused"] is False and resumed["paused_at"] is None
    assert not pausing.is_paused("sims")
    assert [e.change_message for e in LogEntry.objects.order_by("id")][-2:] == [
        "pause paused queue sims", "resume paused queue sims"]


def test_a_form_post_pauses_too_as_the_panel_sends_it(admin_api, crucible):
    response = admin_api.post("/api/queues/pause/", raw="queue=nightly",
                              content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200 and pausing.is_paused("nightly")


@pytest.mark.parametrize(("body", "field", "says"), [
    ({}, "queue", "is required"),
    ({"queue": ""}, "queue", "is required"),
    ({"queue": "x" * 101}, "queue", "at most 100"),
    ({"queue": 5}, "queue", "must be a string"),
    ({"queue": "a", "force": True}, "force", "is not a known field"),
])
def test_a_bad_queue_is_a_400_naming_it_and_nothing_is_paused(admin_api, crucible, body, field,
                                                              says):
    response = admin_api.post("/api/queues/pause/", body)
    assert response.status_code == 400
    error = response.json()
    assert error["detail"]["field"] == field and says in error["error"] + str(error["detail"])
    assert not PausedQueue.objects.exists()


def test_pausing_needs_the_permission_to_manage_workers(crucible):
    viewer = token_api("workers.view_task")
    assert viewer.get("/api/queues/").status_code == 200
    assert viewer.post("/api/queues/pause/", {"queue": "sims"}).status_code == 403
    assert not PausedQueue.objects.exists()
    operator = token_api("workers.manage_workers")
    assert operator.post("/api/queues/pause/", {"queue": "sims"}).status_code == 200

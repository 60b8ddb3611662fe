"""The runs endpoints: submit (allow-listed paths only), read, pause, resume, cancel."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import LogEntry

from workers.models import Run, Task, TaskDependency
from workers.models.run import RunState
from workers.states import TaskState

from ..helpers import TASKS
from .conftest import NO_STATIC_ROOT, session_api, token_api

pytestmark = [pytest.mark.django_db, NO_STATIC_ROOT]


def diamond(**extra: Any) -> dict[str, Any]:
    return {"name": "nightly", "failure_policy": "halt", "max_parallel": 4, "mode": "parallel",
            "locks": [], **extra, "tasks": [
                {"name": "A", "task": f"{TASKS}.record", "args": ["a"], "kwargs": {},
                 "depends_on": [], "locks": [], "priority": 0, "timeout": 600},
                {"name": "B", "task": f"{TASKS}.record", "args": ["b"], "depends_on": ["A"]},
                {"name": "C", "task": f"{TASKS}.add", "args": [1, 2], "depends_on": ["A"]},
                {"name": "D", "task": f"{TASKS}.noop", "depends_on": ["B", "C"]},
            ]}


def test_submit_writes_the_run_and_answers_each_task_with_its_dependencies(
        admin_api, allowlist, crucible):
    made = admin_api.post("/api/runs/", diamond())
    assert made.status_code == 201, made.json()
    body = made.json()

    assert body["state"] == RunState.RUNNING and body["max_parallel"] == 4
    tasks = {t["name"]: t for t in body["tasks"]}
    assert tasks["A"]["state"] == TaskState.QUEUED, "free, so queued at once"
    assert {n: tasks[n]["state"] for n in "BCD"} == dict.fromkeys("BCD", TaskState.WAITING)
    assert tasks["D"]["depends_on"] == ["B", "C"] and tasks["A"]["depends_on"] == []
    assert TaskDependency.objects.filter(task__run_id=body["id"]).count() == 4
    assert admin_api.get(f"/api/runs/{body['id']}/").json() == body
    assert LogEntry.objects.filter(change_message=f"submit run {body['id']}").exists()


def test_a_bearer_token_with_submit_permission_may_submit(allowlist, crucible):
    api = token_api("workers.submit_task")
    assert api.post("/api/runs/", diamond()).status_code == 201
    assert api.get("/api/runs/").status_code == 403, "viewing needs workers.view_task"


@pytest.mark.parametrize(("tasks", "field", "words"), [
    ([{"name": "A", "task": "os.system", "args": ["id"]}], "tasks[0] (A).task",
     "not an allowed task"),
    ([{"name": "A", "task": f"{TASKS}.noop", "depends_on": ["B"]},
      {"name": "B", "task": f"{TASKS}.noop", "depends_on": ["A"]}], "tasks", "cycle: A → B → A"),
    ([{"name": "A", "task": f"{TASKS}.noop", "depends_on": ["nope"]}],
     "tasks[0] (A).depends_on", "no task named 'nope'"),
    ([{"name": "A", "task": f"{TASKS}.noop"}, {"name": "A", "task": f"{TASKS}.noop"}],
     "tasks[1].name", "already the name of tasks[0]"),
    ([{"name": "A", "task": f"{TASKS}.add", "args": [1]}], "tasks[0] (A).args", "add(a, b)"),
    ([{"name": "A", "task": f"{TASKS}.noop", "colour": "red"}], "tasks[0].colour", "known"),
    ([], "tasks", "non-empty"),
])
def test_a_bad_document_is_refused_naming_the_problem_and_nothing_is_written(
        admin_api, allowlist, crucible, tasks, field, words):
    response = admin_api.post("/api/runs/", {"name": "bad", "tasks": tasks})

    assert response.status_code == 400
    assert response.json()["detail"] == {"field": field}
    assert words in response.json()["error"]
    assert not Run.objects.exists() and not Task.objects.exists()


def test_bad_run_fields_are_refused(admin_api, allowlist, crucible):
    for extra, field in (({"failure_policy": "pray"}, "failure_policy"),
                         ({"max_parallel": 0}, "max_parallel"), ({"mode": 3}, "mode"),
                         ({"name": ""}, "name"), ({"start": "yes"}, "start")):
        response = admin_api.post("/api/runs/", diamond(**extra))
        assert response.status_code == 400 and response.json()["detail"] == {"field": field}
    form = admin_api.post("/api/runs/", raw="name=x", content_type="application/x-www-form-"
                                                                   "urlencoded")
    assert form.status_code == 400 and form.json()["detail"] == {"field": "body"}


def test_pause_resume_cancel_through_the_api(admin_api, allowlist, crucible):
    run_id = admin_api.post("/api/runs/", diamond()).json()["id"]

    paused = admin_api.post(f"/api/runs/{run_id}/pause/").json()
    assert paused["state"] == RunState.PAUSED
    assert {t["state"] for t in paused["tasks"]} == {TaskState.WAITING}, "A held back"
    resumed = admin_api.post(f"/api/runs/{run_id}/resume/").json()
    assert resumed["state"] == RunState.RUNNING
    assert next(t for t in resumed["tasks"] if t["name"] == "A")["state"] == TaskState.QUEUED

    cancelled = admin_api.post(f"/api/runs/{run_id}/cancel/").json()
    assert cancelled["state"] == RunState.CANCELLED and cancelled["finished_at"]
    assert {t["state"] for t in cancelled["tasks"]} == {TaskState.CANCELLED}
    again = admin_api.post(f"/api/runs/{run_id}/pause/")
    assert again.status_code == 409 and "CANCELLED" in again.json()["error"]
    logged = LogEntry.objects.filter(object_id=str(run_id)).order_by("id")
    assert [entry.change_message for entry in logged] == [
        f"{verb} run {run_id}" for verb in ("submit", "pause", "resume", "cancel")]


def test_pausing_needs_manage_workers_and_cancelling_needs_cancel_task(allowlist, crucible):
    run_id = session_api(superuser=True).post("/api/runs/", diamond()).json()["id"]
    viewer = session_api("workers.view_task", "workers.cancel_task")
    assert viewer.post(f"/api/runs/{run_id}/pause/").status_code == 403
    assert viewer.post(f"/api/runs/{run_id}/cancel/").status_code == 200


def test_a_run_can_be_written_without_starting(admin_api, allowlist, crucible):
    body = admin_api.post("/api/runs/", diamond(start=False)).json()
    assert body["state"] == RunState.CREATED
    assert {t["state"] for t in body["tasks"]} == {TaskState.WAITING}
    started = admin_api.post(f"/api/runs/{body['id']}/resume/").json()
    assert started["state"] == RunState.RUNNING and started["started_at"]


def test_the_list_filters_by_state(admin_api, allowlist, crucible):
    first = admin_api.post("/api/runs/", diamond()).json()["id"]
    second = admin_api.post("/api/runs/", diamond(start=False)).json()["id"]
    listed = admin_api.get("/api/runs/").json()["runs"]
    assert [r["id"] for r in listed] == [second, first]
    assert [r["id"] for r in admin_api.get("/api/runs/", state="created").json()["runs"]] == [
        second]
    assert listed[1]["counts"] == {"QUEUED": 1, "WAITING": 3}

"""The task endpoints: submit (allow-listed only), list, detail, cancel, retry."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from workers.models import Task, TaskAttempt, TaskDependency
from workers.states import Outcome, TaskState
from workers.web import listing

from ..helpers import TASKS
from .conftest import NO_STATIC_ROOT, task_row, worker_row

pytestmark = [pytest.mark.django_db, NO_STATIC_ROOT]

RECORD = f"{TASKS}.record"
NOOP = f"{TASKS}.noop"


def messages() -> list[str]:
    return list(LogEntry.objects.order_by("id").values_list("change_message", flat=True))


# --- submit ---


def test_submit_enqueues_an_allowed_task_with_every_field(admin_api, allowlist, crucible):
    before = task_row(TaskState.QUEUED)
    body = {
        "func_path": f"{TASKS}.add", "args": [1], "kwargs": {"b": 2}, "priority": 7,
        "queue": "sims", "max_attempts": 5, "timeout": 90.5, "memory_mb": 512,
        "run_after": "2030-01-01T10:00:00+02:00", "retry_backoff": 0, "depends_on": [before.pk],
    }

    response = admin_api.post("/api/tasks/", body)

    assert response.status_code == 201
    made = response.json()
    task = Task.objects.get(pk=made["id"])
    assert (task.func_path, task.args, task.kwargs) == (f"{TASKS}.add", [1], {"b": 2})
    assert (task.priority, task.queue, task.max_attempts) == (7, "sims", 5)
    assert (task.timeout, task.memory_mb, task.retry_backoff) == (90.5, 512, 0.0)
    assert task.run_after == datetime(2030, 1, 1, 8, tzinfo=UTC)
    assert made["run_after"] == "2030-01-01T08:00:00Z"
    assert made["state"] == TaskState.WAITING
    assert made["depends_on"] == [before.pk]
    assert made["attempts"] == []


def test_submit_fills_in_the_defaults(admin_api, allowlist, crucible):
    made = admin_api.post("/api/tasks/", {"func_path": f"{TASKS}.noop"}).json()

    assert made["state"] == TaskState.QUEUED
    assert made["queue"] == crucible.queue_name
    assert made["max_attempts"] == crucible.max_attempts
    assert made["timeout"] == crucible.task_timeout
    assert (made["args"], made["kwargs"], made["priority"]) == ([], {}, 0)


@pytest.mark.parametrize("func_path", [
    "os.system",
    "subprocess.run",
    "tests.testapp.tasks.fail_always",  # importable, but not on the list
    "api_refused_module.anything",
])
def test_submit_refuses_a_path_off_the_allow_list_without_importing_it(
    admin_api, allowlist, func_path
):
    response = admin_api.post("/api/tasks/", {"func_path": func_path, "args": ["rm -rf /"]})

    assert response.status_code == 400
    assert response.json()["detail"] == {"field": "func_path"}
    assert "is not an allowed task" in response.json()["error"]
    assert Task.objects.count() == 0
    assert "api_refused_module" not in sys.modules


def test_submit_refuses_an_allowed_path_that_is_not_a_function(admin_api, allowlist):
    response = admin_api.post("/api/tasks/", {"func_path": f"{TASKS}.NOT_A_FUNCTION"})

    assert response.status_code == 400
    assert response.json()["error"] == (
        f"func_path: '{TASKS}.NOT_A_FUNCTION' is an int, not a function"
    )


@pytest.mark.parametrize(("body", "field"), [
    ({}, "func_path"),
    ({"func_path": 3}, "func_path"),
    ({"func_path": RECORD, "args": {"a": 1}}, "args"),
    ({"func_path": RECORD, "kwargs": [1]}, "kwargs"),
    ({"func_path": RECORD, "priority": 101}, "priority"),
    ({"func_path": RECORD, "priority": 1.5}, "priority"),
    ({"func_path": RECORD, "priority": "high"}, "priority"),
    ({"func_path": RECORD, "max_attempts": 0}, "max_attempts"),
    ({"func_path": RECORD, "max_attempts": 2**31}, "max_attempts"),
    ({"func_path": RECORD, "timeout": 0}, "timeout"),
    ({"func_path": RECORD, "timeout": -1}, "timeout"),
    ({"func_path": RECORD, "memory_mb": 0}, "memory_mb"),
    ({"func_path": RECORD, "memory_mb": 2**40}, "memory_mb"),
    ({"func_path": RECORD, "run_after": "tomorrow"}, "run_after"),
    ({"func_path": RECORD, "run_after": "2030-01-01T10:00:00"}, "run_after"),
    ({"func_path": RECORD, "retry_backoff": -1}, "retry_backoff"),
    ({"func_path": RECORD, "queue": "q" * 101}, "queue"),
    ({"func_path": RECORD, "queue": "a\x00b"}, "queue"),
    ({"func_path": RECORD, "args": ["\ud800"]}, "args"),
    ({"func_path": RECORD, "kwargs": {"k": {"nul \x00": 1}}}, "kwargs"),
    ({"func_path": RECORD, "depends_on": 3}, "depends_on"),
    ({"func_path": RECORD, "depends_on": [0]}, "depends_on"),
    ({"func_path": RECORD, "depends_on": [2**63]}, "depends_on"),
    ({"func_path": RECORD, "args": ["x"], "depends_on": [999_999]}, "depends_on"),
    ({"func_path": RECORD, "prority": 1}, "prority"),
])
def test_submit_refuses_bad_input_naming_the_field(admin_api, allowlist, body, field):
    response = admin_api.post("/api/tasks/", body)

    assert response.status_code == 400, response.json()
    assert response.json()["detail"] == {"field": field}
    assert Task.objects.count() == 0


# --- submit many ---


def test_bulk_submit_enqueues_every_task_in_order(admin_api, allowlist, crucible):
    calls: list[dict[str, Any]] = [{"func_path": f"{TASKS}.add", "args": [n, 1]}
                                   for n in range(250)]
    calls.append({"func_path": f"{TASKS}.noop", "queue": "sims", "priority": 5})

    response = admin_api.post("/api/tasks/bulk/", {"tasks": calls})

    assert response.status_code == 201
    made = response.json()
    assert made["count"] == 251
    tasks = list(Task.objects.filter(pk__in=made["ids"]).order_by("pk"))
    assert [task.pk for task in tasks] == made["ids"]
    assert [task.args for task in tasks[:250]] == [[n, 1] for n in range(250)]
    assert (tasks[-1].queue, tasks[-1].priority, tasks[-1].state) == ("sims", 5, TaskState.QUEUED)
    assert tasks[0].queue == crucible.queue_name


@pytest.mark.parametrize(("tasks", "field", "words"), [
    (None, "tasks", "non-empty JSON array"),
    ([], "tasks", "non-empty JSON array"),
    ({"func_path": NOOP}, "tasks", "non-empty JSON array"),
    ([{"func_path": NOOP}, 3], "tasks[1]", "JSON object"),
    ([{"func_path": NOOP}, {"func_path": NOOP, "priority": 101}], "tasks[1].priority",
     "between"),
    ([{"func_path": NOOP}, {"func_path": "os.system"}], "tasks[1].func_path",
     "not an allowed task"),
    ([{"func_path": NOOP, "prority": 1}], "tasks[0].prority", "not a known field"),
    ([{"func_path": NOOP}, {"func_path": f"{TASKS}.add", "args": [1, 2, 3]}],
     "tasks[1].args", ""),
    ([{"func_path": NOOP, "depends_on": [1]}], "tasks[0].depends_on", "submit a run"),
])
def test_bulk_submit_refuses_naming_the_task_and_writes_nothing(admin_api, allowlist, tasks,
                                                               field, words):
    response = admin_api.post("/api/tasks/bulk/", {"tasks": tasks})

    assert response.status_code == 400, response.json()
    assert response.json()["detail"] == {"field": field}
    assert words in response.json()["error"]
    assert Task.objects.count() == 0


def test_bulk_submit_takes_at_most_ten_thousand_tasks_a_request(admin_api, allowlist):
    response = admin_api.post("/api/tasks/bulk/", {"tasks": [{"func_path": NOOP}] * 10_001})

    assert response.status_code == 400
    assert response.json()["detail"] == {"field": "tasks"}
    assert "at most 10000" in response.json()["error"]
    assert Task.objects.count() == 0


@pytest.mark.parametrize(("raw", "field"), [
    (f'{{"func_path": "{RECORD}", "timeout": 1e999}}', "timeout"),
    (f'{{"func_path": "{RECORD}", "args": [1e999]}}', "args"),
    (f'{{"func_path": "{RECORD}", "timeout": Infinity}}', "body"),
])
def test_submit_refuses_numbers_beyond_floats(admin_api, allowlist, raw, field):
    response = admin_api.post("/api/tasks/", raw=raw)

    assert response.status_code == 400
    assert response.json()["detail"] == {"field": field}


def test_submit_refuses_json_nested_too_deeply(admin_api, allowlist):
    deep: list[Any] = []
    for _ in range(40):
        deep = [deep]

    response = admin_api.post("/api/tasks/", {"func_path": RECORD, "args": deep})

    assert response.status_code == 400
    assert "nested deeper" in response.json()["error"]


def test_submit_refuses_a_failed_predecessor(admin_api, allowlist):
    failed = task_row(TaskState.FAILED)

    response = admin_api.post("/api/tasks/", {"func_path": RECORD, "args": ["x"],
                                               "depends_on": [failed.pk]})

    assert response.status_code == 400
    assert response.json()["error"] == f"depends_on: task {failed.pk} already failed"


# --- list ---


@pytest.fixture
def tasks(crucible: Any) -> dict[str, Task]:
    worker = worker_row(crucible.node_address)
    return {
        "a": task_row(TaskState.QUEUED, func_path="sims.slab.run", queue="sims", priority=5),
        "b": task_row(TaskState.RUNNING, func_path="sims.slab.plot", worker=worker),
        "c": task_row(TaskState.FAILED, func_path="other.job", priority=-3),
        "d": task_row(TaskState.SUCCEEDED, func_path="sims.slab.run", worker=worker),
    }


def ids(response: Any) -> list[int]:
    return [row["id"] for row in response.json()["results"]]


def test_the_list_is_newest_first(admin_api, tasks):
    response = admin_api.get("/api/tasks/")

    assert ids(response) == [tasks[k].pk for k in "dcba"]
    assert response.json()["next"] is None
    assert response.json()["previous"] is None
    assert "args" not in response.json()["results"][0], "the list leaves the call out"


@pytest.mark.parametrize(("params", "expected"), [
    ({"state": "QUEUED"}, "a"),
    ({"state": "running,failed"}, "cb"),
    ({"state": ["SUCCEEDED", "QUEUED"]}, "da"),
    ({"queue": "sims"}, "a"),
    ({"priority": "-3"}, "c"),
    ({"func_path": "sims.slab.run"}, "da"),
    ({"func_path": "sims.slab"}, ""),
    ({"func_path_prefix": "sims.slab."}, "dba"),
    ({"func_path_prefix": "sims%"}, ""),
    ({"func_path_prefix": "sims", "state": "QUEUED"}, "a"),
])
def test_the_list_filters(admin_api, tasks, params, expected):
    response = admin_api.get("/api/tasks/", **params)

    assert ids(response) == [tasks[k].pk for k in expected]


def test_a_prefix_with_more_paths_than_are_listed_is_still_exact(admin_api, tasks,
                                                                   monkeypatch):
    monkeypatch.setattr(listing, "MAX_PATHS", 1)  # more distinct paths than it lists

    response = admin_api.get("/api/tasks/", func_path_prefix="sims.slab.")

    assert ids(response) == [tasks[k].pk for k in "dba"]


@pytest.mark.parametrize("params", [{"queue": "sims"}, {"func_path_prefix": "sims."},
                                    {"priority": "5"}, {"state": "QUEUED", "worker": "1"}])
def test_a_filtered_page_costs_a_few_queries_whatever_the_table_holds(
    admin_api, tasks, django_assert_max_num_queries, params
):
    admin_api.get("/api/tasks/")  # warm the session and permission caches of this test

    # session, user; the distinct paths (a prefix), the ids of few matches, the page
    with django_assert_max_num_queries(5) as captured:
        admin_api.get("/api/tasks/", **params)

    assert not any("OFFSET" in q["sql"].upper() for q in captured.captured_queries)


def test_a_rare_queue_is_read_by_its_ids_through_the_state_index(admin_api, tasks):
    """Else the page walks the primary key from the newest task, testing every row."""
    admin_api.get("/api/tasks/")

    with CaptureQueriesContext(connection) as captured:
        assert ids(admin_api.get("/api/tasks/", queue="sims")) == [tasks["a"].pk]

    probe, page = (q["sql"] for q in captured.captured_queries[-2:])
    assert '"state" IN (' in probe and '"queue" = ' in probe, "task_state_idx serves it"
    assert f'"id" IN ({tasks["a"].pk})' in page


def test_the_list_filters_by_worker(admin_api, tasks):
    worker_id = tasks["b"].worker_id

    assert ids(admin_api.get("/api/tasks/", worker=worker_id)) == [tasks["d"].pk, tasks["b"].pk]


def test_the_list_pages_by_keyset_keeping_the_filters(admin_api, crucible):
    made = [task_row().pk for _ in range(5)][::-1]  # newest first
    task_row(TaskState.FAILED)  # filtered out, between none of them

    first = admin_api.get("/api/tasks/", page_size=2, state="QUEUED").json()
    second = admin_api.client.get(first["next"]).json()
    last = admin_api.client.get(second["next"]).json()

    assert [row["id"] for row in first["results"]] == made[:2]
    assert first["page_size"] == 2
    assert first["next"] == (
        f"http://testserver/api/tasks/?page_size=2&state=QUEUED&after={made[1]}"
    )
    assert first["previous"] is None
    assert [row["id"] for row in second["results"]] == made[2:4]
    assert [row["id"] for row in last["results"]] == made[4:]
    assert last["next"] is None
    assert last["previous"].endswith(f"?page_size=2&state=QUEUED&before={made[4]}")


def test_previous_leads_back_page_by_page(admin_api, crucible):
    made = [task_row().pk for _ in range(5)][::-1]

    last = admin_api.get("/api/tasks/", page_size=2, after=made[3]).json()
    back = admin_api.client.get(last["previous"]).json()
    front = admin_api.client.get(back["previous"]).json()

    assert [row["id"] for row in last["results"]] == made[4:]
    assert [row["id"] for row in back["results"]] == made[2:4], "still newest first"
    assert back["next"].endswith(f"after={made[3]}")
    assert [row["id"] for row in front["results"]] == made[:2]
    assert front["previous"] is None


def test_after_and_before_together_page_through_the_window_between(admin_api, crucible):
    made = [task_row().pk for _ in range(6)][::-1]  # newest first

    first = admin_api.get("/api/tasks/", page_size=2, after=made[0], before=made[5]).json()
    second = admin_api.client.get(first["next"]).json()

    assert [row["id"] for row in first["results"]] == made[1:3]
    assert first["next"].endswith(f"?page_size=2&after={made[2]}&before={made[5]}")
    assert first["previous"].endswith(f"?page_size=2&before={made[1]}")
    assert [row["id"] for row in second["results"]] == made[3:5]
    assert second["next"] is None, "the window's floor ends it"


def test_a_page_past_the_end_is_empty(admin_api, crucible):
    oldest = task_row().pk

    beyond = admin_api.get("/api/tasks/", after=oldest).json()

    assert beyond["results"] == []
    assert (beyond["next"], beyond["previous"]) == (None, None)


def test_a_cursor_need_not_be_a_task_that_exists(admin_api, crucible):
    made = [task_row().pk for _ in range(3)]
    Task.objects.filter(pk=made[1]).delete()  # e.g. pruned since the page was read

    assert ids(admin_api.get("/api/tasks/", after=made[1])) == [made[0]]
    assert ids(admin_api.get("/api/tasks/", before=made[1])) == [made[2]]


def test_the_page_size_is_capped(admin_api, crucible):
    assert admin_api.get("/api/tasks/", page_size=10_000).json()["page_size"] == 200


@pytest.mark.parametrize(("params", "field"), [
    ({"state": "DONE"}, "state"),
    ({"priority": "high"}, "priority"),
    ({"priority": "1000"}, "priority"),
    ({"worker": "x"}, "worker"),
    ({"worker": str(2**63)}, "worker"),
    ({"page": "2"}, "page"),
    ({"after": "0"}, "after"),
    ({"after": "x"}, "after"),
    ({"before": str(2**63)}, "before"),
    ({"page_size": "-1"}, "page_size"),
    ({"queue": "a\x00"}, "queue"),
    ({"status": "FAILED"}, "status"),  # a typo must not list everything
])
def test_the_list_refuses_bad_filters(admin_api, params, field):
    response = admin_api.get("/api/tasks/", **params)

    assert response.status_code == 400
    assert response.json()["detail"] == {"field": field}


@pytest.mark.parametrize("cursor", [None, "after", "before"])
def test_a_page_is_one_query_whatever_the_table_holds(admin_api, crucible,
                                                      django_assert_num_queries, cursor):
    for _ in range(3):
        task_row()
    admin_api.get("/api/tasks/")  # warm the session and permission caches of this test
    made = [task_row().pk for _ in range(120)]
    params = {cursor: made[60]} if cursor else {}

    # session, user, the page (a superuser needs no permission query): no COUNT
    with django_assert_num_queries(3) as captured:
        assert len(admin_api.get("/api/tasks/", **params).json()["results"]) == 50

    sql = captured.captured_queries[-1]["sql"].upper()
    assert "COUNT(" not in sql and "OFFSET" not in sql
    assert "LIMIT 51" in sql


# --- detail ---


def test_the_detail_has_every_attempt_and_the_progress(admin_api, crucible):
    worker = worker_row(crucible.node_address)
    before = task_row(TaskState.SUCCEEDED)
    task = task_row(TaskState.RUNNING, worker=worker, attempt=2, progress=0.5,
                    progress_message="half", result=None)
    TaskDependency.objects.create(task=task, depends_on=before)
    now = timezone.now()
    TaskAttempt.objects.create(
        task=task, number=1, worker=worker, started_at=now - timedelta(seconds=9),
        finished_at=now, outcome=Outcome.ERROR, error="boom", traceback="Traceback...",
        exception_class="ValueError", peak_rss_bytes=2**30,
    )

    body = admin_api.get(f"/api/tasks/{task.pk}/").json()

    assert (body["progress"], body["progress_message"]) == (0.5, "half")
    assert body["depends_on"] == [before.pk]
    assert body["args"] == ["x"]
    [attempt] = body["attempts"]
    assert attempt["number"] == 1
    assert attempt["worker_id"] == worker.pk
    assert attempt["outcome"] == Outcome.ERROR
    assert (attempt["error"], attempt["traceback"]) == ("boom", "Traceback...")
    assert attempt["peak_rss_bytes"] == 2**30
    assert attempt["finished_at"].endswith("Z")


@pytest.mark.parametrize("task_id", [404404, 2**63 - 1, 10**25])
def test_an_unknown_task_is_404(admin_api, task_id):
    response = admin_api.get(f"/api/tasks/{task_id}/")

    assert response.status_code == 404
    assert response.json()["error"] == f"no task with id {task_id}"


# --- cancel and retry ---


@pytest.mark.parametrize("state", [TaskState.QUEUED, TaskState.WAITING])
def test_cancel_of_a_task_not_yet_running_is_immediate(admin_api, state):
    task = task_row(state)

    response = admin_api.post(f"/api/tasks/{task.pk}/cancel/")

    assert response.status_code == 200
    assert response.json()["state"] == TaskState.CANCELLED
    assert messages() == [f"cancel task {task.pk}"]


def test_cancel_of_a_running_task_asks_its_worker(admin_api, crucible):
    task = task_row(TaskState.RUNNING, worker=worker_row(crucible.node_address))

    body = admin_api.post(f"/api/tasks/{task.pk}/cancel/").json()

    assert body["state"] == TaskState.RUNNING
    assert body["cancel_requested_at"] is not None


@pytest.mark.parametrize("state", [TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED])
def test_cancel_of_a_finished_task_is_409(admin_api, state):
    task = task_row(state)

    response = admin_api.post(f"/api/tasks/{task.pk}/cancel/")

    assert response.status_code == 409
    assert response.json()["detail"] == {"state": state}
    assert Task.objects.get(pk=task.pk).state == state
    assert messages() == []


@pytest.mark.parametrize("state", [TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED])
def test_retry_of_a_finished_task_queues_it_again(admin_api, state):
    task = task_row(state, attempt=3, error="it broke", finished_at=timezone.now())

    response = admin_api.post(f"/api/tasks/{task.pk}/retry/")

    assert response.status_code == 200
    body = response.json()
    assert body["state"] == TaskState.QUEUED
    assert (body["attempt_base"], body["error"], body["finished_at"]) == (3, "", None)
    assert messages() == [f"retry task {task.pk}"]


@pytest.mark.parametrize("state", [TaskState.RUNNING, TaskState.QUEUED, TaskState.WAITING])
def test_retry_of_an_unfinished_task_is_409(admin_api, state):
    task = task_row(state)

    response = admin_api.post(f"/api/tasks/{task.pk}/retry/")

    assert response.status_code == 409
    assert response.json()["error"].startswith(f"task {task.pk} is {state}")
    assert messages() == []


@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_cancel_and_retry_of_an_unknown_task_are_404(admin_api, action):
    assert admin_api.post(f"/api/tasks/987654/{action}/").status_code == 404

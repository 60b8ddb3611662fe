"""The worker endpoints on the database alone: status, admission refusals, drain, abort, tick.

Starting real processes is in test_real_workers.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from workers.models import Heartbeat, Task, Worker
from workers.pool import admission, launcher
from workers.states import TaskState, WorkerState

from .conftest import NO_STATIC_ROOT, Api, session_api, task_row, token_api, worker_row

pytestmark = [pytest.mark.django_db, NO_STATIC_ROOT]


def messages() -> list[str]:
    return list(LogEntry.objects.order_by("id").values_list("change_message", flat=True))


# --- status ---


def test_status_is_the_snapshot_document(admin_api, crucible):
    worker_row(crucible.node_address, pid=None, rss_bytes=3 * 2**20)
    task_row(TaskState.QUEUED, queue="sims")

    body = admin_api.get("/api/workers/status/").json()

    assert [w["state"] for w in body["workers"]] == ["RUNNING"]
    assert body["workers"][0]["memory"] == 3 * 2**20
    assert body["queue"]["sims"]["queued"] == 1
    assert body["memory"]["total"] > body["memory"]["available"] > 0
    assert body["generated_at"].endswith("Z")


def populate(node: str, count: int) -> None:
    """Running workers, each with a running task and a few heartbeats."""
    now = timezone.now()
    for index in range(count):
        worker = worker_row(node, pid=None, last_heartbeat=now, started_at=now)
        task_row(TaskState.RUNNING, worker=worker, attempt=1, last_attempted_at=now)
        Heartbeat.objects.bulk_create(
            Heartbeat(worker=worker, at=now - timedelta(seconds=s), rss_bytes=index, cpu_percent=1)
            for s in range(3)
        )


def status_queries(api: Api) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert api.get("/api/workers/status/").status_code == 200
    return len(queries)


def test_the_status_query_count_does_not_grow_with_the_workers(
    crucible, django_assert_num_queries
):
    api = session_api("workers.view_worker")
    populate(crucible.node_address, 2)
    few = status_queries(api)
    populate(crucible.node_address, 62)
    assert Worker.objects.count() == 64

    # session, user, 2 for permissions; snapshot: 2 for workers, tasks, samples, 4 for
    # admission (active workers, running tasks, the next task, nodes), paused queues, 2 for
    # queue counts.
    with django_assert_num_queries(few):
        body = api.get("/api/workers/status/").json()
    assert len(body["workers"]) == 64
    assert all(worker["task"] is not None for worker in body["workers"])
    assert few == 15


def test_a_token_adds_at_most_one_query_to_the_status(crucible):
    api = token_api("workers.view_worker")
    populate(crucible.node_address, 3)
    status_queries(api)  # the first use records last_used_at

    assert status_queries(api) == 14  # token and user in one query, no session


# --- add: refusals (starting processes is in test_real_workers.py) ---


def test_add_beyond_capacity_is_409_with_the_admission_figures(admin_api, crucible, capacity):
    worker_row(crucible.node_address)

    response = admin_api.post("/api/workers/add/")

    assert response.status_code == 409
    body = response.json()
    assert body["error"].startswith("Cannot add 1: WORKER_MAX_COUNT allows 1 worker")
    assert body["detail"]["reason"] == "WORKER_MAX_COUNT allows 1 worker; 1 is active."
    assert body["detail"]["admissible"] == 1
    assert body["detail"]["active"] == 1
    assert body["detail"]["requested"] == 1
    assert Worker.objects.count() == 1, "nothing was started"
    assert messages() == [], "refusals are not audited as actions"


def test_add_counts_the_workers_asked_for(admin_api, crucible, capacity):
    capacity(3)
    worker_row(crucible.node_address)

    response = admin_api.post("/api/workers/add/", {"count": 3})

    assert response.status_code == 409
    assert response.json()["detail"] == {
        "reason": "WORKER_MAX_COUNT allows 3 workers; 1 is active.", "forceable": False,
        "limit": "max_count", "admissible": 3, "active": 1, "requested": 3,
        "limits": response.json()["detail"]["limits"],
    }


@pytest.mark.parametrize(("body", "query"), [
    ({"count": 6, "force": True}, ""),
    ({"count": 32, "force": True}, ""),
    ({"count": 5}, "?force=true"),
])
def test_force_never_goes_past_worker_max_count(admin_api, crucible, capacity, monkeypatch,
                                                body, query):
    capacity(4)
    monkeypatch.setattr(launcher, "_start_process", refuse_to_start)

    response = admin_api.post(f"/api/workers/add/{query}", body)

    assert response.status_code == 409
    assert response.json()["error"].startswith(
        f"Cannot add {body['count']}: WORKER_MAX_COUNT allows 4 workers"
    )
    assert response.json()["detail"]["reason"] == (
        "WORKER_MAX_COUNT allows 4 workers; none are active."
    )
    assert response.json()["detail"]["forceable"] is False
    assert Worker.objects.count() == 0, "nothing was started"
    assert messages() == []


def test_a_refusal_force_would_pass_says_so(admin_api, crucible, capacity, monkeypatch):
    capacity(4)
    low = admission.MachineMemory(total=2**34, available=3 * 2**19, percent=99.0)
    monkeypatch.setattr(admission, "_virtual_memory", lambda: low)  # room for one more
    worker_row(crucible.node_address)

    response = admin_api.post("/api/workers/add/", {"count": 2})

    assert response.status_code == 409
    # room for one task of 1 MB, which the idle worker would take
    assert response.json()["detail"]["reason"].startswith("Memory allows 1 worker")
    assert response.json()["detail"]["forceable"] is True
    assert response.json()["detail"]["limit"] == "memory"


def refuse_to_start(*args: object) -> int:
    raise AssertionError("no process may start in this test")


@pytest.mark.parametrize(("body", "field"), [
    ({"count": 0}, "count"),
    ({"count": 33}, "count"),
    ({"count": "2"}, "count"),
    ({"count": True}, "count"),
    ({"force": "yes"}, "force"),
    ({"forse": True}, "forse"),
    ([1], "body"),
])
def test_add_refuses_bad_input_naming_the_field(admin_api, capacity, body, field):
    response = admin_api.post("/api/workers/add/", body)

    assert response.status_code == 400
    assert response.json()["detail"] == {"field": field}


def test_add_refuses_a_bad_force_in_the_query(admin_api, capacity):
    response = admin_api.post("/api/workers/add/?force=maybe")

    assert response.status_code == 400
    assert response.json()["detail"] == {"field": "force"}


@pytest.mark.parametrize("raw", ["{", "{'force': true}", "[" * 5000, '{"count": NaN}',
                                 "\xff\xfe"])
def test_malformed_json_is_400_naming_the_body(admin_api, capacity, raw):
    response = admin_api.post("/api/workers/add/", raw=raw)

    assert response.status_code == 400
    assert response.json()["detail"] == {"field": "body"}


# --- drain ---


def test_drain_prefers_an_idle_worker_and_records_it(admin_api, crucible):
    busy = worker_row(crucible.node_address)
    task_row(TaskState.RUNNING, worker=busy)
    idle = worker_row(crucible.node_address)

    response = admin_api.post("/api/workers/drain/")

    assert response.status_code == 200
    assert response.json()["worker_id"] == idle.pk
    assert "Draining: finishes its task, then stops" in response.json()["warnings"]
    assert Worker.objects.get(pk=idle.pk).drain_requested_at is not None
    assert Worker.objects.get(pk=busy.pk).drain_requested_at is None
    assert messages() == [f"drain worker {idle.pk}"]


def test_drain_a_named_worker(admin_api, crucible):
    first, second = worker_row(crucible.node_address), worker_row(crucible.node_address)

    response = admin_api.post("/api/workers/drain/", {"worker_id": second.pk})

    assert response.json()["worker_id"] == second.pk
    assert Worker.objects.get(pk=first.pk).drain_requested_at is None


def test_drain_takes_form_fields_too(admin_api, crucible):
    worker = worker_row(crucible.node_address)

    response = admin_api.post("/api/workers/drain/", raw=f"worker_id={worker.pk}",
                              content_type="application/x-www-form-urlencoded")

    assert response.status_code == 200
    assert response.json()["worker_id"] == worker.pk


def test_drain_without_a_running_worker_is_404(admin_api, crucible):
    worker_row(crucible.node_address, state=WorkerState.STARTING)

    response = admin_api.post("/api/workers/drain/")

    assert response.status_code == 404
    assert response.json()["error"] == "no running worker to drain"


@pytest.mark.parametrize("state", [WorkerState.DEAD, WorkerState.FAILED])
def test_drain_of_an_ended_worker_is_409(admin_api, crucible, state):
    ended = worker_row(crucible.node_address, state=state, stopped_at=timezone.now())

    response = admin_api.post("/api/workers/drain/", {"worker_id": ended.pk})

    assert response.status_code == 409
    assert response.json()["detail"] == {"state": state}
    assert messages() == []


@pytest.mark.parametrize("worker_id", [999_999, 2**63 - 1])
def test_drain_of_an_unknown_worker_is_404(admin_api, worker_id):
    assert admin_api.post("/api/workers/drain/", {"worker_id": worker_id}).status_code == 404


def test_drain_refuses_an_id_no_database_holds(admin_api):
    response = admin_api.post("/api/workers/drain/", {"worker_id": 2**63})

    assert response.status_code == 400
    assert response.json()["detail"] == {"field": "worker_id"}


# --- abort ---


def test_abort_asks_the_worker_to_stop_and_records_it(admin_api, crucible):
    worker = worker_row(crucible.node_address)

    response = admin_api.post(f"/api/workers/{worker.pk}/abort/")

    assert response.status_code == 200
    assert response.json()["worker_id"] == worker.pk
    assert "Abort requested" in response.json()["warnings"]
    assert Worker.objects.get(pk=worker.pk).abort_requested_at is not None
    assert messages() == [f"abort worker {worker.pk}"]


def test_abort_of_an_ended_worker_is_409(admin_api, crucible):
    dead = worker_row(crucible.node_address, state=WorkerState.DEAD, stopped_at=timezone.now())

    response = admin_api.post(f"/api/workers/{dead.pk}/abort/")

    assert response.status_code == 409
    assert response.json()["error"] == f"worker {dead.pk} is already DEAD"


@pytest.mark.parametrize("worker_id", [424242, 2**63 - 1, 10**30])
def test_abort_of_an_unknown_worker_is_404(admin_api, worker_id):
    response = admin_api.post(f"/api/workers/{worker_id}/abort/")

    assert response.status_code == 404


def test_abort_refuses_unexpected_fields(admin_api, crucible):
    worker = worker_row(crucible.node_address)

    response = admin_api.post(f"/api/workers/{worker.pk}/abort/", {"force": True})

    assert response.status_code == 400
    assert Worker.objects.get(pk=worker.pk).abort_requested_at is None


# --- tick ---


def test_tick_runs_the_monitor_and_reports(admin_api, crucible, settings):
    import dataclasses

    settings.CRUCIBLE = dataclasses.replace(settings.CRUCIBLE, startup_timeout=0.001)
    stuck = worker_row(crucible.node_address, state=WorkerState.STARTING)
    Worker.objects.filter(pk=stuck.pk).update(created_at=timezone.now() - timedelta(seconds=5))

    response = admin_api.post("/workers/tick/")

    assert response.status_code == 200
    assert response.json()["timed_out"] == [stuck.pk]
    assert Worker.objects.get(pk=stuck.pk).state == WorkerState.FAILED
    assert Task.objects.count() == 0

"""The live task list: its refresh fragment, scheduled tasks apart, search by simulation,
bulk cancel and retry of what a filter matches, a queue's page, links to a task's owner."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from simulations.models import Simulation, Sweep
from workers.models import Task, Worker
from workers.states import TaskState, WorkerState
from workers.web import listing, tasklist

pytestmark = pytest.mark.django_db

TASKS = "/admin/workers/task/"
ROWS = {"HX-Request": "true", "HX-Target": "cr-task-rows"}


def make(func_path: str = "app.jobs.run", **fields: Any) -> Task:
    return Task.objects.create(func_path=func_path, timeout=60, **fields)


def listed(response: Any) -> list[int]:
    return [task.pk for task in response.context["cl"].result_list]


# --- The refresh ---


def test_the_refresh_answers_the_rows_alone(admin_client):
    task = make()
    whole = admin_client.get(TASKS)
    rows = admin_client.get(TASKS, headers=ROWS)
    assert 'id="cr-task-rows"' in whole.content.decode()
    assert 'hx-trigger="every 5s [crucibleTasks.shouldPoll()]' in whole.content.decode()
    body = rows.content.decode()
    assert rows.status_code == 200 and "<html" not in body and "changelist-filter" not in body
    assert f'href="/admin/workers/task/{task.pk}/change/' in body
    assert "no-cache" in rows["Cache-Control"]


def test_the_refresh_lists_no_filter_choices_but_applies_the_chosen_ones(admin_client):
    worker = Worker.objects.create(node="n", state=WorkerState.RUNNING)
    mine = make(queue="gpu", priority=5, worker=worker)
    make(queue="gpu")
    query = {"queue": "gpu", "priority": "5", "worker__id__exact": str(worker.pk)}
    with CaptureQueriesContext(connection) as whole:
        admin_client.get(TASKS, query)
    with CaptureQueriesContext(connection) as rows:
        assert listed(admin_client.get(TASKS, query, headers=ROWS)) == [mine.pk]
    def choices(captured: Any) -> list[str]:
        return [q["sql"] for q in captured.captured_queries
                if "WITH RECURSIVE" in q["sql"] or '"workers_worker"."node"' in q["sql"]]
    assert choices(whole) and not choices(rows)


def test_the_refresh_keeps_the_filter_and_shows_the_new_state(admin_client):
    task = make(queue="gpu")
    make(queue="default")
    Task.objects.filter(pk=task.pk).update(state=TaskState.RUNNING, progress=0.5,
                                           last_attempted_at=timezone.now())
    rows = admin_client.get(TASKS, {"queue": "gpu"}, headers=ROWS)
    assert listed(rows) == [task.pk]
    assert "cr-badge--running" in rows.content.decode()


# --- Scheduled apart from queued ---


def test_scheduled_tasks_are_shown_and_filtered_apart_from_queued(admin_client):
    later = make(run_after=timezone.now() + timedelta(hours=1))
    due = make(run_after=timezone.now() - timedelta(seconds=1))
    plain = make()
    assert listed(admin_client.get(TASKS, {"state__exact": "QUEUED"})) == [plain.pk, due.pk]
    scheduled = admin_client.get(TASKS, {"state__exact": "SCHEDULED"})
    assert listed(scheduled) == [later.pk]
    assert "cr-badge--scheduled" in scheduled.content.decode()
    assert "cr-badge--scheduled" not in admin_client.get(TASKS, {"state__exact": "QUEUED"}
                                                         ).content.decode()
    page = admin_client.get(f"{TASKS}{later.pk}/change/").content.decode()
    assert 'data-state="SCHEDULED"' in page


def test_a_state_that_does_not_exist_is_refused_not_a_500(admin_client):
    refused = admin_client.get(TASKS, {"state__exact": "SOON"})
    assert refused.status_code == 302 and "e=1" in refused["Location"]


# --- Search ---


@pytest.fixture
def simulations() -> dict[str, Task]:
    hot, cold = make("simulations.kinds.slab.run"), make("simulations.kinds.slab.run")
    other = make()
    sweep = Sweep.objects.create(name="Glaze study", kind="slab")
    Simulation.objects.create(kind="slab", name="Hot kiln", memory_mb=64, task=hot,
                              parameters={"h": 100, "glaze": "celadon"})
    Simulation.objects.create(kind="slab", name="Cold start", parameters={"h": 10.0},
                              memory_mb=64, task=cold, sweep=sweep)
    return {"hot": hot, "cold": cold, "other": other}


def test_search_finds_tasks_by_their_simulations_name(simulations):
    tasks = Task.objects.all()
    assert list(listing.search(tasks, "kiln")) == [simulations["hot"]]
    assert list(listing.search(tasks, ["GLAZE", "STUDY"][1])) == [simulations["cold"]]


def test_search_finds_tasks_by_a_parameters_value(simulations):
    tasks = Task.objects.all()
    assert list(listing.search(tasks, "h=100")) == [simulations["hot"]]
    assert list(listing.search(tasks, "h=10")) == [simulations["cold"]]  # 10.0 is 10
    assert list(listing.search(tasks, "glaze=celadon")) == [simulations["hot"]]
    assert list(listing.search(tasks, "celadon")) == [simulations["hot"]]  # a bare value
    assert list(listing.search(tasks, "h=7")) == []
    assert list(listing.search(tasks, "kiln h=10")) == []  # every word must match


def test_a_word_matching_many_simulations_is_one_subquery_not_a_list_of_ids(simulations):
    for n in range(300):
        Simulation.objects.create(kind="slab", name=f"Kiln batch {n}", memory_mb=64,
                                  task=make("simulations.kinds.slab.run"), parameters={"h": n})
    with CaptureQueriesContext(connection) as queries:
        found = listing.search(Task.objects.all(), "kiln").count()
    assert found == 301
    counted = queries.captured_queries[-1]["sql"]
    assert counted.count("SELECT") >= 2, "the simulations' task ids are read as a subquery"
    assert len(re.findall(r"\b\d+\b", counted)) < 50, "not one parameter per matching task"

    with CaptureQueriesContext(connection) as queries:
        assert listing.search(Task.objects.all(), "987654321").count() == 0
    assert "simulation" not in queries.captured_queries[-1]["sql"], (
        "a word no simulation matches adds no subquery to the task query")


def test_search_still_finds_ids_and_function_paths(simulations):
    tasks = Task.objects.all()
    other = simulations["other"]
    assert list(listing.search(tasks, str(other.pk))) == [other]
    assert set(listing.search(tasks, "slab")) == {simulations["hot"], simulations["cold"]}


def test_odd_search_words_are_no_error(admin_client, simulations):
    for words in ("=", "h=", "=5", "a__b=1", "h=[1", "'; DROP TABLE x; --", "contains=1"):
        assert admin_client.get(TASKS, {"q": words}).status_code == 200, words


def test_the_list_and_the_task_page_link_the_simulation(admin_client, simulations):
    hot = simulations["hot"]
    sim = Simulation.objects.get(task=hot)
    link = f'href="/admin/simulations/simulation/{sim.pk}/change/"'
    assert link in admin_client.get(TASKS).content.decode()
    assert link in admin_client.get(f"{TASKS}{hot.pk}/change/").content.decode()


# --- Bulk cancel and retry of everything a filter matches ---


def bulk(verb: str, **query: str) -> str:
    from urllib.parse import urlencode

    return f"{TASKS}bulk/{verb}/?{urlencode(query)}"


def test_bulk_cancel_counts_first_then_cancels_what_it_counted(admin_client):
    queued = [make(queue="gpu") for _ in range(3)]
    done = make(queue="gpu", state=TaskState.SUCCEEDED, finished_at=timezone.now())
    worker = Worker.objects.create(node="n", state=WorkerState.RUNNING)
    running = make(queue="gpu", state=TaskState.RUNNING, worker=worker)
    elsewhere = make(queue="default")
    page = admin_client.get(bulk("cancel", queue="gpu"))
    text = page.content.decode()
    assert page.status_code == 200
    assert 'id="cr-bulk-count">4<' in text and 'id="cr-bulk-matched">5<' in text
    assert "1 running one(s) are asked to stop" in text and "1 already finished" in text
    arrived = make(queue="gpu")  # after the confirmation: not counted, not touched
    answer = admin_client.post(bulk("cancel", queue="gpu"), {"upto": page.context["bulk"].upto},
                               follow=True)
    assert "Cancelled 4 task(s)." in answer.content.decode()
    states = dict(Task.objects.values_list("pk", "state"))
    assert all(states[t.pk] == TaskState.CANCELLED for t in queued)
    assert states[done.pk] == TaskState.SUCCEEDED
    assert states[elsewhere.pk] == states[arrived.pk] == TaskState.QUEUED
    assert states[running.pk] == TaskState.RUNNING  # its worker stops it
    assert Task.objects.get(pk=running.pk).cancel_requested_at is not None
    logged = LogEntry.objects.filter(change_message__startswith="cancel task")
    assert sorted(int(str(e.object_id)) for e in logged) == sorted([*(t.pk for t in queued),
                                                               running.pk])


def test_bulk_retry_of_the_failed_ones_of_a_search(admin_client):
    failed = [make("app.jobs.report", state=TaskState.FAILED, finished_at=timezone.now(),
                   attempt=3) for _ in range(2)]
    make("app.jobs.report")
    make("app.jobs.other", state=TaskState.FAILED, finished_at=timezone.now())
    query = {"q": "report", "state__exact": "FAILED"}
    page = admin_client.get(bulk("retry", **query))
    assert 'id="cr-bulk-count">2<' in page.content.decode()
    answer = admin_client.post(bulk("retry", **query), {"upto": page.context["bulk"].upto},
                               follow=True)
    assert "Retrying 2 task(s)." in answer.content.decode()
    assert {Task.objects.get(pk=t.pk).state for t in failed} == {TaskState.QUEUED}


def test_bulk_refuses_more_than_it_can_count(admin_client):
    newest = [make() for _ in range(4)][-1]
    with mock.patch.object(tasklist, "COUNT_CAP", 3):
        answer = admin_client.get(bulk("cancel"), follow=True)
        # upto: the newest task counted (ids are not reset between tests on PostgreSQL)
        posted = admin_client.post(bulk("cancel"), {"upto": str(newest.pk)}, follow=True)
    assert "more than 3 tasks match: narrow the filter" in answer.content.decode()
    assert "more than 3 tasks match" in posted.content.decode()
    assert not Task.objects.filter(state=TaskState.CANCELLED).exists()


def test_bulk_bad_input_is_named(admin_client):
    make()
    assert admin_client.get(f"{TASKS}bulk/delete/").status_code == 404
    bad_filter = admin_client.get(bulk("cancel", priority="high"), follow=True)
    assert "The filter is not valid." in bad_filter.content.decode()
    bad_upto = admin_client.post(bulk("cancel"), {"upto": "x"}, follow=True)
    assert "Nothing done: upto must be a task id, not &#x27;x&#x27;." in bad_upto.content.decode()
    assert not Task.objects.filter(state=TaskState.CANCELLED).exists()


def test_bulk_needs_the_permission(client, django_user_model):
    task = make()
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_task"))
    client.force_login(viewer)
    listing_page = client.get(TASKS).content.decode()
    assert "Cancel all matching" not in listing_page
    assert client.get(bulk("cancel")).status_code == 403
    assert client.post(bulk("cancel"), {"upto": str(task.pk)}).status_code == 403
    assert Task.objects.get(pk=task.pk).state == TaskState.QUEUED


# --- A queue's page ---


def test_a_queue_page_counts_depth_scheduled_waiting_and_running(admin_client):
    worker = Worker.objects.create(node="n", state=WorkerState.RUNNING)
    for _ in range(3):
        make(queue="gpu")
    make(queue="gpu", run_after=timezone.now() + timedelta(minutes=5))
    make(queue="gpu", state=TaskState.WAITING)
    running = make(queue="gpu", state=TaskState.RUNNING, worker=worker, progress=0.5,
                   last_attempted_at=timezone.now() - timedelta(seconds=60))
    make(queue="default")
    page = admin_client.get(f"{TASKS}queues/gpu/")
    summary = page.context["summary"]
    assert (summary.queued, summary.scheduled, summary.waiting, summary.running) == (3, 1, 1, 1)
    text = page.content.decode()
    assert f'href="/admin/workers/task/{running.pk}/change/"' in text
    assert f'href="/admin/workers/worker/{worker.pk}/change/"' in text
    assert "left" in text  # the running task's ETA
    assert 'href="/admin/workers/task/queues/gpu/"' in admin_client.get(TASKS).content.decode()


# --- Links between a task, its simulation and its worker, from the panel too ---


def running_simulation() -> tuple[Simulation, Task, Worker]:
    worker = Worker.objects.create(node="elsewhere", state=WorkerState.RUNNING, pid=4321,
                                   started_at=timezone.now(), last_heartbeat=timezone.now())
    task = make("simulations.kinds.slab.run", state=TaskState.RUNNING, worker=worker,
                progress=0.5, attempt=1, last_attempted_at=timezone.now() - timedelta(minutes=2))
    sim = Simulation.objects.create(kind="slab", name="Hot kiln", memory_mb=64, task=task)
    return sim, task, worker


def test_the_panel_card_links_its_worker_and_tells_the_tasks_eta(admin_client):
    _, task, worker = running_simulation()
    card = admin_client.get("/htmx/workers/status/", headers={"HX-Request": "true"})
    text = card.content.decode()
    assert f'href="/admin/workers/worker/{worker.pk}/change/"' in text
    assert f'href="/admin/workers/task/{task.pk}/change/"' in text
    assert 'class="cr-card-eta"' in text and "min" in text  # about two more minutes


def test_the_task_page_tells_a_running_tasks_eta(admin_client):
    _, task, _ = running_simulation()
    page = admin_client.get(f"{TASKS}{task.pk}/change/").content.decode()
    assert re.search(r'class="cr-task-live" data-state="RUNNING"[^>]*>2 min 0\d s left<', page)


def test_the_worker_page_leads_to_its_tasks(admin_client):
    _, task, worker = running_simulation()
    page = admin_client.get(f"/admin/workers/worker/{worker.pk}/change/").content.decode()
    assert f'href="/admin/workers/task/?worker__id__exact={worker.pk}"' in page
    listed_ids = listed(admin_client.get(TASKS, {"worker__id__exact": str(worker.pk)}))
    assert listed_ids == [task.pk]


def test_the_simulation_list_and_page_link_the_task_and_its_worker(admin_client):
    sim, task, worker = running_simulation()
    task_link = f'href="/admin/workers/task/{task.pk}/change/"'
    worker_link = f'href="/admin/workers/worker/{worker.pk}/change/"'
    sims = "/admin/simulations/simulation/"
    for url in (sims, f"{sims}{sim.pk}/change/"):
        text = admin_client.get(url).content.decode()
        assert task_link in text and worker_link in text, url


def test_the_simulation_list_refreshes_its_rows_alone(admin_client):
    sim, task, _ = running_simulation()
    whole = admin_client.get("/admin/simulations/simulation/").content.decode()
    assert 'id="cr-sim-rows"' in whole and "crucible/tasks.js" in whole
    Task.objects.filter(pk=task.pk).update(state=TaskState.SUCCEEDED)
    rows = admin_client.get("/admin/simulations/simulation/",
                            headers={"HX-Request": "true", "HX-Target": "cr-sim-rows"})
    body = rows.content.decode()
    assert "<html" not in body and "succeeded" in body
    assert f'href="/admin/simulations/simulation/{sim.pk}/change/' in body


def test_any_queue_name_gets_its_page(admin_client):
    make(queue="lab/gpu 2")
    listed_page = admin_client.get(TASKS).content.decode()
    assert 'href="/admin/workers/task/queues/lab/gpu%202/"' in listed_page
    page = admin_client.get("/admin/workers/task/queues/lab/gpu%202/")
    assert page.status_code == 200 and page.context["summary"].queued == 1


@pytest.mark.parametrize(("state", "note"), [
    (TaskState.RUNNING, True), (TaskState.QUEUED, True), (TaskState.FAILED, False),
])
def test_a_retried_tasks_page_says_its_error_is_an_earlier_attempts(admin_client, state, note):
    job = make(state=state, attempt=2, error="ValueError: first try")

    html = admin_client.get(f"/admin/workers/task/{job.pk}/change/").content.decode()

    assert "ValueError: first try" in html
    assert (f"An earlier attempt&#x27;s; the task is {state} again." in html) is note


def test_search_by_a_sweeps_name_finds_its_summary_task_too(simulations):
    summary = make("simulations.sweeps.summarise")
    Sweep.objects.filter(name="Glaze study").update(summary_task=summary)

    found = set(listing.search(Task.objects.all(), "glaze"))

    assert found == {simulations["hot"], simulations["cold"], summary}, (
        "hot by its parameter, cold by its sweep, the summary by its sweep")

"""The task list at scale: bounded counts, filter values by index, search, failed-last-hour."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from workers.models import Task, Worker
from workers.states import TaskState, WorkerState
from workers.web import listing, status

pytestmark = pytest.mark.django_db

TASKS = "/admin/workers/task/"


def make(func_path: str = "app.jobs.run", **fields: Any) -> Task:
    return Task.objects.create(func_path=func_path, timeout=60, **fields)


def test_distinct_values_jump_through_the_index_in_order():
    for path in ["b.two", "a.one", "c.three", "a.one", "b.two"]:
        make(path)
    assert listing.distinct_values(Task, "func_path") == ["a.one", "b.two", "c.three"]
    assert listing.distinct_values(Task, "func_path", limit=2) == ["a.one", "b.two"]
    assert listing.distinct_values(Worker, "node") == []


def test_the_queue_filter_lists_the_queues_of_tasks_in_every_state():
    make(queue="gpu", state=TaskState.FAILED)
    make(queue="default", state=TaskState.QUEUED)
    make(queue="big", state=TaskState.WAITING)
    assert listing.task_queues() == ["big", "default", "gpu"]


def test_the_priority_filter_lists_the_default_and_the_others_highest_first():
    make(priority=5)
    make(priority=-3)
    assert listing.task_priorities() == [5, 0, -3]
    assert list(listing.with_priority(Task.objects.all(), 0)) == []


def test_search_finds_an_id_or_part_of_a_function_path():
    sim = make("simulations.kinds.slab.run")
    other = make("app.jobs.report")
    tasks = Task.objects.all()
    assert list(listing.search(tasks, "SLAB")) == [sim]
    assert list(listing.search(tasks, f"{other.pk}")) == [other]
    assert list(listing.search(tasks, "slab run")) == [sim]
    assert list(listing.search(tasks, "slab report")) == []
    assert list(listing.search(tasks, "nothing")) == []
    assert list(listing.search(tasks, str(2**64))) == []


def test_the_count_stops_at_its_cap_and_the_page_says_more_than(admin_client):
    Task.objects.bulk_create(Task(func_path="app.jobs.run", timeout=60) for _ in range(7))
    with mock.patch.object(listing.BoundedPaginator, "cap", 5):
        page = admin_client.get(TASKS)
        searched = admin_client.get(TASKS, {"q": "run"})
    assert page.context["cl"].result_count == 6
    assert "More than 5 tasks" in page.content.decode()
    assert "more than 5 results" in searched.content.decode()
    assert admin_client.get(TASKS).context["cl"].result_count == 7


def test_the_task_list_counts_once_with_a_bounded_count(admin_client):
    make()
    with CaptureQueriesContext(connection) as queries:
        assert admin_client.get(TASKS).status_code == 200
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert len(counts) == 1
    assert "LIMIT 10001" in counts[0]


def test_filters_by_priority_and_worker_and_refuses_malformed_values(admin_client):
    worker = Worker.objects.create(node="n", state=WorkerState.RUNNING)
    urgent = make(priority=9, worker=worker)
    make()
    assert list(admin_client.get(TASKS, {"priority": "9"}).context["cl"].result_list) == [urgent]
    by_worker = admin_client.get(TASKS, {"worker__id__exact": str(worker.pk)})
    assert list(by_worker.context["cl"].result_list) == [urgent]
    refused = admin_client.get(TASKS, {"priority": "high"})
    assert refused.status_code == 302 and "e=1" in refused["Location"]


def test_failed_in_the_last_hour_is_judged_by_the_database_clock():
    now = timezone.now()
    make(state=TaskState.FAILED, finished_at=now - timedelta(minutes=10), queue="gpu")
    make(state=TaskState.FAILED, finished_at=now - timedelta(hours=2), queue="gpu")
    make(state=TaskState.SUCCEEDED, finished_at=now, queue="gpu")
    # A node whose clock runs a day ahead still counts what failed in the database's hour.
    with mock.patch("django.utils.timezone.now", return_value=now + timedelta(days=1)):
        counts = status.queue_counts()
    assert counts["gpu"]["failed_last_hour"] == 1


def test_failed_in_the_last_hour_is_read_through_the_finished_index():
    per_queue = status.failed_since(3600).values("queue").annotate(n=Count("id"))
    sql, params = per_queue.query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}", params)
        else:  # with its parameters bound, as Django runs it, and without statistics
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        plan = " ".join(str(col) for row in cursor.fetchall() for col in row)
    assert "task_finished_idx" in plan, plan


def test_only_names_and_numbers_are_written_into_the_sql():
    from workers.queue.literals import Literal

    for value in ("a'b", "x; DROP", 1.5, True):
        with pytest.raises((TypeError, ValueError)):
            list(Task.objects.filter(state=Literal(value)))


def _page_query(admin_client: Any, **params: str) -> str:
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(TASKS, params)
    assert response.status_code == 200
    pages = [q["sql"] for q in queries.captured_queries
             if q["sql"].startswith('SELECT "workers_task"."id", "workers_task"."func_path"')]
    assert len(pages) == 1, pages
    return pages[0]


def test_a_rare_value_is_listed_by_the_ids_its_index_finds(admin_client):
    rare = [make(queue="rare").pk for _ in range(3)]
    Task.objects.bulk_create(Task(func_path="app.jobs.run", timeout=60) for _ in range(6))
    page = _page_query(admin_client, queue="rare")
    assert '"workers_task"."id" IN (' in page
    assert all(str(pk) in page for pk in rare)
    with mock.patch.object(listing, "COUNT_CAP", 5):
        common = _page_query(admin_client, queue="default")
    assert '"workers_task"."id" IN (' not in common
    assert '"workers_task"."queue" = ' in common


def test_a_page_of_a_pinned_list_reads_only_its_own_ids(admin_client):
    from workers.admin import TaskAdmin

    rare = [make(queue="rare").pk for _ in range(5)]
    make()
    with mock.patch.object(TaskAdmin, "list_per_page", 2):
        page = _page_query(admin_client, queue="rare", p="2")
        response = admin_client.get(TASKS, {"queue": "rare", "p": "2"})
    newest_first = sorted(rare, reverse=True)
    assert [t.pk for t in response.context["cl"].result_list] == newest_first[2:4]
    assert response.context["cl"].result_count == 5
    listed = re.search(r'"workers_task"\."id" IN \(([^)]*)\)', page)
    assert listed is not None, page
    assert {int(pk) for pk in listed.group(1).split(",")} == set(newest_first[2:4])

"""The task list's refresh made cheap, and kept the same: rows written as Django's
``result_list`` writes them, no statement per row, only the columns the list shows, the
queued and scheduled filters through their own indexes; and bad input on the task views
answered, never a 500."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.contrib.admin.templatetags.admin_list import result_list
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from simulations.models import Simulation
from workers.models import Task, Worker
from workers.queue import pausing
from workers.states import TaskState, WorkerState
from workers.web import admin_rows

pytestmark = pytest.mark.django_db

TASKS = "/admin/workers/task/"
ROWS = {"HX-Request": "true", "HX-Target": "cr-task-rows"}
NOW = timezone.now()


def make(func_path: str = "app.jobs.run", **fields: Any) -> Task:
    return Task.objects.create(func_path=func_path, timeout=60, **fields)


def variety() -> list[Task]:
    """A task of every look the list has: each state, scheduled, running with an ETA and a
    worker, an owner, a priority, odd queue names and a function path to escape."""
    worker = Worker.objects.create(node="n", state=WorkerState.RUNNING)
    owned = make("simulations.kinds.slab.run", state=TaskState.SUCCEEDED, finished_at=NOW,
                 worker=worker, attempt=1)
    Simulation.objects.create(kind="slab", name="Hot <kiln>", memory_mb=64, task=owned)
    return [
        owned,
        make(queue="lab/gpu 2", priority=5),
        make("app.<b>odd</b>.run", queue="a&b"),
        make(run_after=NOW + timedelta(hours=1)),
        make(state=TaskState.RUNNING, worker=worker, progress=0.25, attempt=1,
             progress_message='step "3" <of> 9', last_attempted_at=NOW - timedelta(seconds=90)),
        make(state=TaskState.FAILED, finished_at=NOW, attempt=3, error="boom"),
        make(state=TaskState.WAITING, queue=""),
    ]


def html(context: dict[str, Any]) -> list[str]:
    return ["".join(str(cell) for cell in row) for row in context["results"]]


@pytest.mark.parametrize("query", [{}, {"queue": "lab/gpu 2"}, {"q": "run", "o": "1"}])
def test_the_rows_are_what_the_admin_would_write(admin_client, query):
    variety()
    with mock.patch("django.utils.timezone.now", return_value=NOW + timedelta(seconds=1)):
        cl = admin_client.get(TASKS, query, headers=ROWS).context["cl"]
        ours, django = admin_rows.result_context(cl), result_list(cl)
    assert ours["result_headers"] == django["result_headers"]
    assert ours["num_sorted_fields"] == django["num_sorted_fields"]
    assert html(ours) == html(django)
    assert len(ours["results"]) == len(cl.result_list) > 0


def test_a_list_it_does_not_write_is_left_to_django(admin_client):
    make()
    cl = admin_client.get(TASKS).context["cl"]
    with mock.patch.object(cl, "list_display_links", ["task_cell"]):
        assert html(admin_rows.result_context(cl)) == html(result_list(cl))


def test_the_refresh_costs_the_same_statements_for_one_row_or_thirty(admin_client):
    variety()
    admin_client.get(TASKS, headers=ROWS)  # what a session's first request reads once
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(TASKS, headers=ROWS).status_code == 200
    for _ in range(4):
        variety()
    with CaptureQueriesContext(connection) as many:
        page = admin_client.get(TASKS, headers=ROWS)
    assert len(page.context["cl"].result_list) > 30
    assert len(many.captured_queries) == len(few.captured_queries), [
        q["sql"] for q in many.captured_queries]


def test_the_rows_are_read_without_the_calls_arguments_result_and_error(admin_client):
    make(args=[1] * 1000, result={"big": "x" * 1000})
    with CaptureQueriesContext(connection) as queries:
        body = admin_client.get(TASKS, headers=ROWS).content.decode()
    pages = [q["sql"] for q in queries.captured_queries
             if q["sql"].startswith('SELECT "workers_task"."id", "workers_task"."func_path"')]
    assert len(pages) == 1
    for column in ("args", "kwargs", "result", "error"):
        assert f'"workers_task"."{column}"' not in pages[0], column
    assert "app.jobs.run" in body


# --- The queued and scheduled filters, through their own indexes ---


def plan(tasks: Any) -> str:
    sql, params = tasks.query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_sort = off")
            cursor.execute(f"EXPLAIN {sql}", params)
        else:
            cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return " ".join(str(col) for row in cursor.fetchall() for col in row)


def test_queued_and_scheduled_tasks_are_read_through_their_indexes():
    """SQLite plans without statistics (nothing runs ANALYZE there); PostgreSQL plans by
    them, so its plans are the benchmark's to show (bench/task_views.py, 1,000,000 tasks)."""
    from workers.web import tasklist

    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL plans an empty table by its statistics")
    newest = Task.objects.order_by("-id")
    # a page of the newest queued tasks; the few scheduled ones found (then paged by id)
    assert "task_queued_idx" in plan(tasklist.queued_now(newest)[:100])
    scheduled = tasklist.scheduled(Task.objects.order_by()).values_list("pk", flat=True)
    assert "task_scheduled_idx" in plan(scheduled)


def test_failed_tasks_newest_first_through_their_index():
    """PostgreSQL walked the primary key back past every newer task (55,000 rows at 1M,
    39 ms); SQLite, without statistics, sorts the state index's few failures instead."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite does not take a partial index for a state bound as a parameter")
    for state in ("FAILED", "CANCELLED"):
        assert "task_failed_idx" in plan(Task.objects.filter(state=state).order_by("-id")[:100])


def test_the_filters_still_tell_scheduled_from_queued(admin_client):
    later = make(run_after=NOW + timedelta(hours=1))
    due = make(run_after=NOW - timedelta(seconds=1))
    plain = make()
    make(state=TaskState.RUNNING)

    def listed(state: str) -> list[int]:
        page = admin_client.get(TASKS, {"state__exact": state}, headers=ROWS)
        return [task.pk for task in page.context["cl"].result_list]

    assert listed("SCHEDULED") == [later.pk]
    assert listed("QUEUED") == [plain.pk, due.pk]


# --- Bad input on the task views: answered, never a 500 ---


def test_a_queue_name_with_a_nul_byte_is_refused(admin_client):
    make()
    page = admin_client.get(f"{TASKS}queues/a%00b/")
    assert page.status_code == 400 and b"NUL" in page.content
    filtered = admin_client.get(TASKS, {"queue": "a\x00b"})
    assert filtered.status_code == 302 and "e=1" in filtered["Location"]
    bulk = admin_client.get(f"{TASKS}bulk/cancel/", {"queue": "a\x00b"}, follow=True)
    assert "The filter is not valid." in bulk.content.decode()


@pytest.mark.parametrize("upto", ["\u00b2", "\u0663", "9" * 25])
def test_bulk_refuses_an_upto_that_is_no_task_id(admin_client, upto):
    task = make()
    answer = admin_client.post(f"{TASKS}bulk/cancel/", {"upto": upto}, follow=True)
    assert answer.status_code == 200
    assert "Nothing done: upto must be a task id" in answer.content.decode()
    assert Task.objects.get(pk=task.pk).state == TaskState.QUEUED


def test_a_log_poll_names_a_parameter_that_is_no_number(admin_client):
    task = make(state=TaskState.RUNNING, attempt=1)
    answer = admin_client.get(f"{TASKS}{task.pk}/log/", {"attempt": "\u00b2"},
                              headers={"HX-Request": "true"})
    assert answer.status_code == 400
    assert answer.content.decode().startswith("attempt must be a whole number")


def test_a_queue_whose_name_ends_in_log_has_its_page(admin_client):
    make(queue="nightly/log")
    page = admin_client.get(f"{TASKS}queues/nightly/log/")
    assert page.status_code == 200 and page.context["summary"].queued == 1


def test_huge_ids_in_the_task_views_are_not_found_not_a_500(admin_client):
    huge = "9" * 25
    assert admin_client.get(f"{TASKS}{huge}/log/", {"attempt": "1"},
                            headers={"HX-Request": "true"}).status_code == 404
    assert admin_client.get(f"{TASKS}{huge}/log/1/download/").status_code == 404
    refused = admin_client.get(TASKS, {"worker__id__exact": huge})
    assert refused.status_code in (200, 302)


def test_bulk_needs_the_view_permission_too(client, django_user_model):
    from django.contrib.auth.models import Permission

    task = make()
    canceller = django_user_model.objects.create_user("c", password="pw", is_staff=True)
    canceller.user_permissions.add(Permission.objects.get(codename="cancel_task"))
    client.force_login(canceller)
    assert client.get(f"{TASKS}bulk/cancel/").status_code == 403
    assert client.post(f"{TASKS}bulk/cancel/", {"upto": str(task.pk)}).status_code == 403
    assert Task.objects.get(pk=task.pk).state == TaskState.QUEUED


def test_the_queue_overview_reads_counts_not_running_tasks():
    worker = Worker.objects.create(node="n", state=WorkerState.RUNNING)
    for name in ("a", "b", "c"):
        make(queue=name, state=TaskState.RUNNING, worker=worker)
    with CaptureQueriesContext(connection) as queries:
        states = pausing.overview()
    assert [(s.name, s.running) for s in states] == [("a", 1), ("b", 1), ("c", 1)]
    rows = [q["sql"] for q in queries.captured_queries if '"workers_task"."args"' in q["sql"]]
    assert rows == []


def test_a_filter_that_matches_more_than_the_cap_is_counted_once(admin_client):
    from workers.web import listing

    for _ in range(5):
        make(queue="gpu")
    with mock.patch.object(listing, "COUNT_CAP", 3), \
            mock.patch.object(listing.BoundedPaginator, "cap", 3), \
            CaptureQueriesContext(connection) as queries:
        page = admin_client.get(TASKS, {"queue": "gpu"}, headers=ROWS)
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert len(counts) == 1, counts
    assert "More than 3 tasks" in page.content.decode()


def test_the_cells_fast_formatting_is_djangos():
    from datetime import UTC, datetime

    from django.utils.formats import date_format
    from django.utils.html import format_html
    from django.utils.safestring import mark_safe
    from django.utils.translation import gettext_lazy

    from workers.admin import moment

    for args in (("<b>&\"'",), (mark_safe("<i>ok</i>"), 5, None), (gettext_lazy("Task"), 1.5)):
        template = "<span title=\"{}\">{}</span>" if len(args) > 1 else "<p>{}</p>"
        assert admin_rows.cell_html(template, *args) == format_html(template, *args)
    for at in (datetime(2026, 1, 5, 9, 3, 7, 123, tzinfo=UTC), NOW,
               datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC)):
        with timezone.override("America/Sao_Paulo"):
            local = timezone.localtime(at)
            assert moment(at) == format_html(
                '<time class="cr-nowrap" datetime="{}" title="{}">{}</time>', local.isoformat(),
                date_format(local, "Y-m-d H:i:s"), date_format(local, "M j, H:i"))

"""The Worker Status page, its HTMX fragment, and the admin's navigation, on a real database."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from workers.models import Heartbeat, Task, Worker
from workers.states import TaskState, WorkerState

pytestmark = pytest.mark.django_db

PAGE = "/admin/worker-status/"
FRAGMENT = "/htmx/workers/status/"
HTMX = {"HTTP_HX_REQUEST": "true"}
ELSEWHERE = "node-b"  # not this node: the panel does not look for its processes


def user_with(*codenames: str, staff: bool = True, name: str = "operator") -> User:
    user = User.objects.create_user(name, password="pw", is_staff=staff)
    perms = Permission.objects.filter(content_type__app_label="workers", codename__in=codenames)
    user.user_permissions.set(perms)
    return user


def busy_worker(number: int, samples: int = 3) -> Worker:
    now = timezone.now()
    worker = Worker.objects.create(
        state=WorkerState.RUNNING,
        node=ELSEWHERE,
        pid=10_000 + number,
        queues=["default"],
        started_at=now - timedelta(minutes=5),
        last_heartbeat=now,
        rss_bytes=50 * 2**20,
        cpu_percent=99.0,
    )
    Task.objects.create(
        func_path="tests.testapp.tasks.noop",
        timeout=60,
        state=TaskState.RUNNING,
        worker=worker,
        attempt=1,
        last_attempted_at=now - timedelta(seconds=30),
        progress=0.5,
    )
    Heartbeat.objects.bulk_create(
        Heartbeat(
            worker=worker,
            at=now - timedelta(seconds=i),
            rss_bytes=2**20 * (40 + i),
            cpu_percent=50.0,
        )
        for i in range(samples)
    )
    return worker


@pytest.fixture
def viewer(client):
    client.force_login(user_with("view_worker", name="viewer"))
    return client


@pytest.fixture
def manager(client):
    client.force_login(user_with("view_worker", "manage_workers", name="manager"))
    return client


def test_the_page_renders_the_panel_inside_the_admin(admin_client):
    worker = busy_worker(1)
    page = admin_client.get(PAGE)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="nav-sidebar"' in html, "rendered by the admin, with its navigation"
    assert "django_htmx/htmx-2.min.js" in html, "htmx comes from django-htmx"
    assert f'hx-get="{FRAGMENT}"' in html
    assert "every 5s [crucible.shouldPoll()]" in html
    assert f'id="worker-{worker.pk}"' in html
    assert 'class="cr-badge cr-badge--running"' in html
    assert "<polyline" in html, "a server-rendered memory sparkline"


def test_the_fragment_is_the_same_partial_without_the_page(admin_client):
    worker = busy_worker(1)
    fragment = admin_client.get(FRAGMENT, **HTMX)
    assert fragment.status_code == 200
    html = fragment.content.decode()
    assert "<html" not in html and "nav-sidebar" not in html
    assert html.strip().startswith('<div class="cr-snapshot"')
    assert f'id="worker-{worker.pk}"' in html
    assert "no-store" in fragment["Cache-Control"]
    page = admin_client.get(PAGE).content.decode()

    def unstamped(text: str) -> str:  # the two renders may fall in different seconds
        return re.sub(r'data-updated="[0-9:]+"', 'data-updated=""', text)

    assert unstamped(html.strip()[:200]) in unstamped(page), "the page inlines the same partial"


def test_the_fragment_refuses_an_anonymous_htmx_request_and_redirects_a_browser(client):
    assert client.get(FRAGMENT, **HTMX).status_code == 403
    browser = client.get(FRAGMENT)
    assert browser.status_code == 302
    assert browser["Location"].startswith("/admin/login/?next=")


@pytest.mark.parametrize(
    ("codenames", "staff"),
    [((), True), (("view_worker",), False), (("view_task",), True)],
    ids=["staff-without-permission", "not-staff", "other-permission"],
)
def test_the_fragment_needs_staff_and_view_worker(client, codenames, staff):
    client.force_login(user_with(*codenames, staff=staff))
    assert client.get(FRAGMENT, **HTMX).status_code == 403
    assert client.get(FRAGMENT).status_code == 403


def test_the_page_needs_view_worker(client):
    client.force_login(user_with("view_task"))
    assert client.get(PAGE).status_code == 403


def test_a_viewer_sees_the_pool_but_no_controls(viewer):
    busy_worker(1)
    html = viewer.get(PAGE).content.decode()
    assert "cr-card" in html
    for control in ('id="cr-add"', 'id="cr-drain-one"', 'data-cr-action="abort"', "cr-memory"):
        assert control not in html
    assert viewer.get(FRAGMENT, **HTMX).status_code == 200


def test_a_manager_gets_add_drain_and_abort_calling_the_api(manager):
    worker = busy_worker(1)
    html = manager.get(PAGE).content.decode()
    assert 'hx-post="/api/workers/add/"' in html
    assert 'hx-post="/api/workers/add/?force=true"' in html, "Start anyway in the dialog"
    assert 'hx-post="/api/workers/drain/"' in html
    assert f"data-json='{{\"worker_id\": {worker.pk}}}'" in html
    assert f'hx-post="/api/workers/{worker.pk}/abort/"' in html
    assert "X-CSRFToken" in html
    assert "attempt 1 of 3). It will be requeued" in html


def test_the_add_button_stays_enabled_at_zero_capacity(manager, monkeypatch):
    from workers.pool import admission

    tiny = admission.MachineMemory(total=8 * 2**30, available=2**20, percent=99.9)
    monkeypatch.setattr(admission, "_virtual_memory", lambda: tiny)
    html = manager.get(PAGE).content.decode()
    add = html[html.index('id="cr-add"') :]
    assert "disabled" not in add[: add.index(">")]
    assert "cr-capacity--full" in html and "no room for a worker now" in html
    assert "memory allows none" in html
    assert "Memory allows 0 workers" in html


def test_a_failed_worker_says_why_it_died(admin_client):
    failed = Worker.objects.create(
        state=WorkerState.FAILED,
        node=ELSEWHERE,
        stopped_at=timezone.now(),
        exit_code=-9,
        failure_reason="Process gone: killed by the OOM killer",
        rss_bytes=7 * 2**30,
        log_tail="MemoryError in step 3",
    )
    html = admin_client.get(FRAGMENT, **HTMX).content.decode()
    card = html[html.index(f'id="worker-{failed.pk}"') :]
    assert "cr-badge--failed" in card
    assert "Process gone: killed by the OOM killer" in card
    assert "<dt>Exit code</dt><dd>-9</dd>" in card
    assert "<dt>Last memory</dt><dd>7.0\xa0GB</dd>" in card
    assert f'<details class="cr-log" id="log-{failed.pk}">' in card
    assert "MemoryError in step 3" in card


def test_warnings_and_draining_are_shown(admin_client):
    worker = busy_worker(1)
    Worker.objects.filter(pk=worker.pk).update(
        state=WorkerState.DRAINING,
        drain_requested_at=timezone.now(),
        last_heartbeat=timezone.now() - timedelta(hours=1),
    )
    html = admin_client.get(FRAGMENT, **HTMX).content.decode()
    assert "cr-badge--draining" in html
    assert "Stalled: no heartbeat for" in html
    assert "Draining: finishes its task, then stops" in html


def test_queue_counts_are_shown_per_queue(admin_client):
    Task.objects.create(func_path="tests.testapp.tasks.noop", timeout=1, queue="gpu")
    Task.objects.create(
        func_path="tests.testapp.tasks.noop",
        timeout=1,
        queue="gpu",
        state=TaskState.FAILED,
        finished_at=timezone.now(),
    )
    html = admin_client.get(FRAGMENT, **HTMX).content.decode()
    assert '<th scope="row">gpu</th><td>0</td><td>1</td><td>0</td><td class="cr-bad">1</td>' in html


def test_query_count_does_not_grow_with_the_number_of_workers(
    admin_client, django_assert_num_queries
):
    for number in range(2):
        busy_worker(number)
    admin_client.get(FRAGMENT, **HTMX)  # warm the session and permission caches
    with CaptureQueriesContext(connection) as two:
        assert admin_client.get(FRAGMENT, **HTMX).status_code == 200
    for number in range(2, 64):
        busy_worker(number)
    with django_assert_num_queries(len(two.captured_queries)):
        html = admin_client.get(FRAGMENT, **HTMX).content.decode()
    assert html.count('class="cr-card ') == 64


def test_worker_status_is_in_the_admin_index_and_the_nav_sidebar(admin_client):
    index = admin_client.get("/admin/").content.decode()
    assert f'<a href="{PAGE}">Worker Status</a>' in index
    sidebar = admin_client.get("/admin/workers/task/").content.decode()
    nav = sidebar[sidebar.index('id="nav-sidebar"') :]
    assert f'href="{PAGE}"' in nav
    page = admin_client.get(PAGE).content.decode()
    assert 'aria-current="page">Worker Status</a>' in page, "marked as the current page"


def test_the_link_is_hidden_from_users_who_may_not_view_workers(client):
    client.force_login(user_with("view_task"))
    index = client.get("/admin/").content.decode()
    assert "Worker Status" not in index


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_ends_while_the_panel_reads_is_shown_once(crucible):
    from django.db import connection
    from django.utils import timezone

    from workers.states import WorkerState
    from workers.web import status

    worker = Worker.objects.create(node="n", state=WorkerState.DRAINING)

    def end_it_after_the_active_read(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith('SELECT "workers_worker"') and "DRAINING" in str(params):
            Worker.objects.filter(pk=worker.pk).update(state=WorkerState.DEAD,
                                                       stopped_at=timezone.now())
        return result

    with connection.execute_wrapper(end_it_after_the_active_read):
        rows = status._workers(timezone.now())
    assert [row.pk for row in rows] == [worker.pk]


def cpu_shown(html: str, worker: Worker) -> str:
    card = html.split(f'id="worker-{worker.pk}"', 1)[1]
    match = re.search(r"<dt>CPU</dt><dd[^>]*>([^<]*)</dd>", card)
    assert match
    return match.group(1)


def test_a_new_worker_shows_no_cpu_until_a_second_heartbeat(admin_client):
    """The first sample measures start-up (85 % while importing), not the worker at work."""
    new = busy_worker(1, samples=1)
    Worker.objects.filter(pk=new.pk).update(cpu_percent=85.0)
    assert cpu_shown(admin_client.get(FRAGMENT, **HTMX).content.decode(), new) == "\u2013"
    status = admin_client.get("/api/workers/status/").json()
    assert status["workers"][0]["cpu"] is None

    Heartbeat.objects.create(worker=new, at=timezone.now(), rss_bytes=2**20, cpu_percent=3.0)
    Worker.objects.filter(pk=new.pk).update(cpu_percent=3.0)
    assert cpu_shown(admin_client.get(FRAGMENT, **HTMX).content.decode(), new) == "3 %"


def test_drain_one_is_disabled_without_a_running_worker(manager):
    html = manager.get(PAGE).content.decode()
    button = re.search(r'<button[^>]*id="cr-drain-one"[^>]*>', html, re.S)
    assert button and " disabled" in button.group(0)
    assert 'title="No running worker to drain"' in button.group(0)
    busy_worker(1)
    button = re.search(r'<button[^>]*id="cr-drain-one"[^>]*>', manager.get(PAGE).content.decode(),
                       re.S)
    assert button and " disabled" not in button.group(0)

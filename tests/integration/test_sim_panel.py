"""Sweep-level progress on the Worker Status panel: points done of all, a bar, the summary."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from simulations import progress, services
from simulations.models import Simulation, Sweep
from workers.models import Task
from workers.states import TaskState

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

FRAGMENT = "/htmx/workers/status/"
HTMX = {"HX-Request": "true"}
SMALL = {"n": "11", "t_end": "60"}


def sweep_of(points: int) -> Sweep:
    return services.submit_sweep("slab", SMALL, [("h", [str(10 * (i + 1)) for i in range(points)])])


def end(sweep: Sweep, *states: TaskState) -> None:
    """End its first points in these states."""
    for point, state in zip(sweep.simulations.order_by("pk"), states, strict=False):
        Task.objects.filter(pk=task_of(point)).update(state=state, finished_at=timezone.now())


def task_of(row: Simulation | Sweep) -> int:
    found = row.task_id if isinstance(row, Simulation) else row.summary_task_id
    assert found is not None
    return found


def row_of(html: str, sweep: Sweep) -> str:
    found = re.search(rf'<tr id="sweep-{sweep.pk}">(.*?)</tr>', html, re.S)
    assert found, f"sweep {sweep.pk} is not on the panel"
    return found.group(1)


def test_a_running_sweep_shows_its_points_done_of_all_with_a_bar(admin_client, crucible):
    sweep = sweep_of(4)
    end(sweep, TaskState.SUCCEEDED, TaskState.SUCCEEDED, TaskState.FAILED)
    finished = sweep_of(1)
    end(finished, TaskState.SUCCEEDED)
    Task.objects.filter(pk=task_of(finished)).update(state=TaskState.SUCCEEDED)

    html = admin_client.get(FRAGMENT, headers=HTMX).content.decode()

    row = row_of(html, sweep)
    assert "3 of 4" in row
    assert "1 failed" in row
    assert 'aria-valuenow="75"' in row and "width: 75%" in row
    assert reverse("admin:simulations_sweep_change", args=[sweep.pk]) in row
    assert "summary waiting" in row, "the summary step waits for the last point"
    assert f'id="sweep-{finished.pk}"' not in html, "an ended sweep is not shown"
    page = admin_client.get(reverse("admin:worker_status")).content.decode()
    assert f'<tr id="sweep-{sweep.pk}">' in page, "on the first load too"


def test_no_sweep_no_section(admin_client, crucible):
    assert "Sweeps in progress" not in admin_client.get(FRAGMENT, headers=HTMX).content.decode()


def test_hidden_from_who_may_not_view_sweeps(client, crucible):
    sweep_of(2)
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(
        content_type__app_label="workers", codename__in=["view_worker", "view_task"]))
    client.force_login(user)

    response = client.get(FRAGMENT, headers=HTMX)

    assert response.status_code == 200
    assert "Sweeps in progress" not in response.content.decode()


def test_one_query_however_many_sweeps_and_the_newest_first(admin_client, crucible):
    sweep_of(2)
    admin_client.get(FRAGMENT, headers=HTMX)  # warm the session and permission caches
    with CaptureQueriesContext(connection) as one:
        admin_client.get(FRAGMENT, headers=HTMX)
    sweeps = [sweep_of(2) for _ in range(progress.SHOWN + 1)]
    with CaptureQueriesContext(connection) as many:
        html = admin_client.get(FRAGMENT, headers=HTMX).content.decode()

    assert len(many.captured_queries) == len(one.captured_queries)
    shown = [int(pk) for pk in re.findall(r'<tr id="sweep-(\d+)">', html)]
    assert shown == [sweep.pk for sweep in reversed(sweeps)][: progress.SHOWN]
    assert "More sweeps are going" in html

"""The panel's capacity line: memory committed to running tasks, measured, needed next,
and why a queued task waits."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from .helpers import LAB_NODE, a_busy_node_and_a_waiting_task

pytestmark = [pytest.mark.django_db,
              pytest.mark.filterwarnings("ignore:No directory at:UserWarning")]

PAGE = "/admin/worker-status/"
FRAGMENT = "/htmx/workers/status/"


def test_the_panel_says_what_tasks_commit_and_why_one_waits(admin_client, settings, crucible):
    waiting = a_busy_node_and_a_waiting_task(settings)

    for page in (admin_client.get(PAGE), admin_client.get(FRAGMENT, HTTP_HX_REQUEST="true")):
        html = page.content.decode()
        assert ("Tasks' memory: 8.9 GB of 12.0 GB committed to 1 running task, "
                "2.0 GB measured; next task needs 8.0 GB "
                f"(task {waiting.pk} (m.big, declared))") in html
        assert f"task {waiting.pk} waits: needs 8.0 GB, 3.1 GB free on {LAB_NODE}" in html


def test_the_status_document_says_the_same(settings, crucible):
    from django.test import Client

    from .test_api.conftest import Api

    waiting = a_busy_node_and_a_waiting_task(settings)
    client = Client()
    client.force_login(User.objects.create_superuser("boss", password="pw"))

    body = Api(client).get("/api/workers/status/").json()

    assert body["tasks_memory"] == {
        "budget_mb": 12288, "committed_mb": 9114, "running": 1, "measured": 2**31,
        "next_task_mb": 8192, "next_task_id": waiting.pk,
        "waiting": f"task {waiting.pk} waits: needs 8.0 GB, 3.1 GB free on {LAB_NODE}",
    }


def test_the_node_page_lists_each_budget_and_what_running_tasks_hold(admin_client, settings,
                                                                   crucible):
    a_busy_node_and_a_waiting_task(settings)

    html = admin_client.get("/admin/workers/node/").content.decode()

    assert LAB_NODE in html
    assert "12.0 GB" in html, "the budget"
    assert "8.9 GB, 1 of 8 CPUs" in html, "held by the running task"
    assert "3.1 GB" in html, "free for estimates"
    assert admin_client.get("/admin/workers/node/add/").status_code == 403, "read only"

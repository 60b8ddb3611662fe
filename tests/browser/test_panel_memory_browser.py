"""What the operator reads on the panel about tasks' memory, in a real Chromium: what
running tasks committed and use, what the next task needs, and why one waits."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.integration.helpers import LAB_NODE, a_busy_node_and_a_waiting_task

from .conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)



def test_the_panel_says_why_a_queued_task_waits(page, settings):
    waiting = a_busy_node_and_a_waiting_task(settings)

    log_in(page, "/admin/worker-status/")

    line = page.locator("#cr-tasks-memory")
    expect(line).to_be_visible()
    expect(line).to_contain_text("8.9 GB of 12.0 GB committed to 1 running task, 2.0 GB "
                                 "measured; next task needs 8.0 GB")
    expect(page.locator("#cr-waiting")).to_have_text(
        f"task {waiting.pk} waits: needs 8.0 GB, 3.1 GB free on {LAB_NODE}")

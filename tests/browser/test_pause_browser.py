"""Pausing a queue from the panel in Chromium: asked first, shown as paused, resumed."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import wait_for
from tests.integration.helpers import enqueue
from workers.queue import pausing

from .conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)

STATUS = "/admin/worker-status/"


def test_pause_a_queue_from_the_panel_then_resume_it(page: Page) -> None:
    enqueue("add", 1, 2, queue="sims")
    log_in(page, STATUS)
    row = page.locator("tr.cr-queue-row[data-queue='sims']")
    expect(row).to_be_visible()

    row.get_by_role("button", name="Pause").click()
    dialog = page.locator("#cr-confirm")
    expect(dialog).to_be_visible()
    expect(page.locator("#cr-confirm-title")).to_have_text("Pause queue sims?")
    expect(page.locator("#cr-confirm-text")).to_contain_text("1 queued task(s) stay queued")
    page.locator("#cr-confirm-ok").click()

    wait_for(lambda: pausing.is_paused("sims"))
    expect(page.locator("#cr-flash")).to_contain_text(re.compile("^Paused queue sims"))
    expect(row.locator(".cr-badge--paused")).to_have_text("paused")

    row.get_by_role("button", name="Resume").click()
    wait_for(lambda: not pausing.is_paused("sims"))
    expect(row.locator(".cr-badge--paused")).to_have_count(0)
    expect(row.get_by_role("button", name="Pause")).to_be_visible()

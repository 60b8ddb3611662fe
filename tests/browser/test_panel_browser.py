"""The operator's panel in a real Chromium: log in, add, drain, abort, force past admission,
and no polling while the panel is collapsed or the tab hidden."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.conftest import wait_for
from tests.integration.helpers import enqueue
from workers.models import Task, Worker
from workers.pool import admission, launcher
from workers.states import Outcome, TaskState

from .conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)

STATUS = "/admin/worker-status/"
FRAGMENT = "/htmx/workers/status/"


def card(page: Page, worker_id: int) -> Locator:
    return page.locator(f"#worker-{worker_id}")


def badge(page: Page, worker_id: int) -> Locator:
    return card(page, worker_id).locator(".cr-badge")


def only_worker() -> Worker:
    worker: Worker = wait_for(lambda: Worker.objects.order_by("-id").first(), timeout=5)
    return worker


def wait_in_browser(page: Page, predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Like wait_for, but lets Playwright deliver its events (requests) meanwhile."""
    for _ in range(int(timeout * 10)):
        if predicate():
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"condition not met within {timeout} s")


def count_polls(page: Page) -> list[str]:
    seen: list[str] = []
    page.on(
        "request", lambda request: seen.append(request.url) if FRAGMENT in request.url else None
    )
    return seen


def test_an_operator_logs_in_and_finds_the_panel_in_the_navigation(page):
    log_in(page)
    page.locator("#content-main").get_by_role("link", name="Worker Status").click()
    expect(page).to_have_url(re.compile(f"{STATUS}$"))
    expect(page.locator("h1")).to_have_text("Worker Status")
    current = page.locator("#nav-sidebar").get_by_role("link", name="Worker Status")
    expect(current).to_have_attribute("aria-current", "page")
    expect(page.locator(".cr-empty")).to_contain_text("No active workers")
    page.click("#cr-refresh")
    expect(page.locator("#cr-fresh")).to_have_text(re.compile(r"^Updated \d\d:\d\d:\d\d$"))


def test_add_a_worker_see_it_run_then_drain_it(page, spawning):
    log_in(page, STATUS)
    page.click("#cr-add")
    expect(page.locator("#cr-flash")).to_contain_text("Started worker")
    worker = only_worker()
    expect(badge(page, worker.pk)).to_have_text("RUNNING", timeout=20_000)
    expect(card(page, worker.pk)).to_contain_text(f"PID {worker.pid}")

    card(page, worker.pk).get_by_role("button", name="Drain").click()
    expect(page.locator("#cr-flash")).to_contain_text(f"Draining worker {worker.pk}")
    expect(badge(page, worker.pk)).to_have_text("DEAD", timeout=10_000)
    expect(page.locator("#cr-ended")).to_contain_text("drained by operator")


def test_abort_asks_first_and_says_the_task_will_be_requeued(page, spawning):
    job = enqueue("sleep_then_record", "long", 60)
    worker = launcher.add(1)[0]
    wait_for(lambda: Task.objects.get(pk=job.pk).state == TaskState.RUNNING, timeout=20)
    log_in(page, STATUS)
    expect(card(page, worker.pk)).to_contain_text(f"Task {job.pk}")

    card(page, worker.pk).get_by_role("button", name="Abort").click()
    dialog = page.locator("#cr-confirm")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"Abort worker {worker.pk}?")
    expect(dialog).to_contain_text("attempt 1 of 3). It will be requeued")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    assert Worker.objects.get(pk=worker.pk).abort_requested_at is None, "cancel aborts nothing"

    card(page, worker.pk).get_by_role("button", name="Abort").click()
    dialog.get_by_role("button", name="Abort worker").click()
    expect(page.locator("#cr-flash")).to_contain_text(f"Aborting worker {worker.pk}")
    expect(badge(page, worker.pk)).to_have_text(re.compile("DEAD|FAILED"), timeout=10_000)
    requeued = Task.objects.get(pk=job.pk)
    assert requeued.state == TaskState.QUEUED
    assert requeued.attempts.get().outcome == Outcome.ABORTED


def test_insufficient_memory_warns_and_start_anyway_starts_one(page, spawning, monkeypatch):
    tiny = admission.MachineMemory(total=8 * 2**30, available=2**20, percent=99.9)
    monkeypatch.setattr(admission, "_virtual_memory", lambda: tiny)
    log_in(page, STATUS)
    expect(page.locator("#cr-capacity")).to_contain_text("no room for a worker now")
    expect(page.locator("#cr-add")).to_be_enabled()

    page.click("#cr-add")
    dialog = page.locator("#cr-memory")
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text("Insufficient memory")
    expect(dialog).to_contain_text("Memory allows 0 workers")
    for risk in ("Crashes", "Slowdowns", "Data loss"):
        expect(dialog.locator('[data-limit="memory"] .cr-risks')).to_contain_text(risk)
    expect(dialog.locator('[data-limit="cores"]')).to_be_hidden()
    assert not Worker.objects.exists(), "refused: nothing started yet"

    dialog.get_by_role("button", name="Start anyway").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#cr-flash")).to_contain_text("beyond capacity")
    worker = only_worker()
    expect(badge(page, worker.pk)).to_have_text("RUNNING", timeout=20_000)


def test_at_worker_max_count_the_panel_does_not_offer_to_force(page, settings, monkeypatch):
    settings.CRUCIBLE = dataclasses.replace(settings.CRUCIBLE, max_count=0)
    monkeypatch.setattr(launcher, "_start_process", refuse_to_start)
    log_in(page, STATUS)

    page.click("#cr-add")
    dialog = page.locator("#cr-memory")
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text("Worker cap reached")
    expect(dialog.locator('[data-limit="max_count"]')).to_contain_text("hard cap")
    expect(dialog.locator('[data-limit="memory"]')).to_be_hidden()
    expect(dialog).to_contain_text("WORKER_MAX_COUNT allows 0 workers")
    expect(dialog.get_by_role("button", name="Start anyway")).to_be_hidden()
    assert not Worker.objects.exists()


def refuse_to_start(*args: object) -> int:
    raise AssertionError("no process may start in this test")


def test_polling_stops_while_collapsed_or_hidden(page):
    log_in(page, STATUS)
    polls = count_polls(page)
    wait_in_browser(page, lambda: len(polls) >= 2)
    expect(page.locator("#cr-fresh")).to_have_text(re.compile("^Updated"))

    page.click("#cr-toggle")
    expect(page.locator("#cr-body")).to_be_hidden()
    page.wait_for_timeout(300)  # a request already on its way may still land
    polls.clear()
    page.wait_for_timeout(2500)
    assert polls == [], "no requests while collapsed"

    page.reload()  # the panel remembers it was collapsed
    expect(page.locator("#cr-toggle")).to_have_attribute("aria-expanded", "false")
    page.wait_for_timeout(1500)
    assert polls == []

    page.click("#cr-toggle")
    wait_in_browser(page, lambda: len(polls) >= 1, timeout=3)  # refreshed at once when expanded
    page.evaluate("""() => {
        Object.defineProperty(document, "visibilityState", {value: "hidden", configurable: true});
        document.dispatchEvent(new Event("visibilitychange"));
    }""")
    page.wait_for_timeout(300)
    polls.clear()
    page.wait_for_timeout(2500)
    assert polls == [], "no requests while the tab is hidden"


def test_a_failed_update_is_marked(page):
    log_in(page, STATUS)
    page.route(f"**{FRAGMENT}", lambda route: route.fulfill(status=500, body="down"))
    page.click("#cr-refresh")
    failed = re.compile(r"^Updates failing \(HTTP 500\): showing \d\d:\d\d:\d\d$")
    expect(page.locator("#cr-fresh")).to_have_text(failed)
    expect(page.locator("#cr-fresh")).to_have_class(re.compile("cr-fresh--failed"))
    page.unroute(f"**{FRAGMENT}")
    page.click("#cr-refresh")
    expect(page.locator("#cr-fresh")).to_have_text(re.compile("^Updated"))

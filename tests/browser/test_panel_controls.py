"""The panel in Chromium: controls that fit the pool's state, stale figures that say so, a
dialog that names the limit that binds, and cancelling a drain."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from tests.conftest import wait_for
from tests.integration.helpers import enqueue
from tests.testapp.models import Execution
from workers.models import Task, Worker
from workers.pool import admission, launcher
from workers.states import TaskState, WorkerState

from .conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)

STATUS = "/admin/worker-status/"
FRAGMENT = "/htmx/workers/status/"
ELSEWHERE = "node-b"  # not this node: no process is looked for, no capacity taken


def remote_worker(**fields: object) -> Worker:
    now = timezone.now()
    defaults: dict[str, object] = {
        "state": WorkerState.RUNNING, "node": ELSEWHERE, "pid": 4242, "queues": ["default"],
        "started_at": now - timedelta(minutes=3), "last_heartbeat": now,
    }
    return Worker.objects.create(**{**defaults, **fields})


def seconds_shown(text: str) -> int:
    match = re.fullmatch(r"(?:(\d+) min )?(\d+) s ago", text.strip())
    assert match, text
    return int(match.group(1) or 0) * 60 + int(match.group(2))


def test_drain_one_is_offered_only_with_a_running_worker(page: Page) -> None:
    log_in(page, STATUS)
    drain_one = page.locator("#cr-drain-one")
    expect(drain_one).to_be_disabled()
    expect(drain_one).to_have_attribute("title", "No running worker to drain")

    remote_worker()
    expect(drain_one).to_be_enabled(timeout=5_000)  # the next poll says there is one now
    expect(drain_one).to_have_attribute("title", re.compile("finish its task and stop"))


def test_failing_updates_dim_the_cards_and_their_ages_keep_counting(page: Page) -> None:
    worker = remote_worker()
    log_in(page, STATUS)
    heartbeat_css = f"#worker-{worker.pk} dt:text-is('Heartbeat') + dd"
    expect(page.locator(heartbeat_css)).to_have_text(re.compile(r"^\d+ s ago$"))
    # Read afresh each time: a poll replaces the snapshot and its cards.
    opacity = ("() => parseFloat(getComputedStyle("
               "document.querySelector('#cr-body .cr-snapshot')).opacity)")
    assert page.evaluate(opacity) == 1.0

    page.route(f"**{FRAGMENT}", lambda route: route.fulfill(status=503, body="down"))
    page.click("#cr-refresh")
    expect(page.locator("#cr-fresh")).to_have_text(re.compile(r"^Updates failing \(HTTP 503\)"))
    expect(page.locator("#cr-body")).to_have_class(re.compile("cr-stale"))
    page.wait_for_function(f"({opacity})() <= 0.6")
    first = seconds_shown(page.locator(heartbeat_css).inner_text())
    page.wait_for_function(
        "([css, first]) => { const m = document.querySelector(css).textContent"
        ".match(/(\\d+) s ago/); return m && parseInt(m[1]) >= first + 2; }",
        arg=[f"#worker-{worker.pk} .cr-metrics div:nth-child(3) dd", first],
    )

    page.unroute(f"**{FRAGMENT}")
    page.click("#cr-refresh")
    expect(page.locator("#cr-fresh")).to_have_text(re.compile("^Updated"))
    expect(page.locator("#cr-body")).not_to_have_class(re.compile("cr-stale"))


def test_when_cores_bind_the_dialog_names_cores_and_their_risks(
    page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admission, "_physical_cores", lambda: 1)
    monkeypatch.setattr(launcher, "_start_process", refuse_to_start)
    from workers import conf

    remote_worker(node=conf.get().node_address)
    log_in(page, STATUS)
    expect(page.locator("#cr-capacity")).to_contain_text("full")
    expect(page.locator("#cr-capacity")).to_contain_text("1 of 1 places in use")

    page.click("#cr-add")
    dialog = page.locator("#cr-memory")
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text("All cores in use")
    expect(dialog).to_contain_text("Physical cores (1) allow 1 worker")
    expect(dialog.locator('[data-limit="cores"]')).to_be_visible()
    expect(dialog.locator('[data-limit="cores"]')).to_contain_text("Slower tasks")
    expect(dialog.locator('[data-limit="memory"]')).to_be_hidden()
    expect(dialog.locator("#cr-go-on")).to_contain_text("If you go on, one more worker starts")
    expect(dialog.get_by_role("button", name="Start anyway")).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    assert Worker.objects.count() == 1


def refuse_to_start(*args: object) -> int:
    raise AssertionError("no process may start in this test")


def test_cancel_a_drain_from_the_panel_and_the_worker_claims_again(
    page: Page, spawning: object, runtime_dir: Path
) -> None:
    gate = runtime_dir / "gate"
    first = enqueue("wait_for_file", str(gate), "panel")
    worker = launcher.add(1)[0]
    wait_for(lambda: Execution.objects.filter(key="panel:start").exists(), timeout=20)
    launcher.drain(worker.pk)
    log_in(page, STATUS)
    card = page.locator(f"#worker-{worker.pk}")
    expect(card.locator(".cr-badge")).to_have_text("DRAINING", timeout=10_000)

    card.get_by_role("button", name="Cancel drain").click()
    dialog = page.locator("#cr-confirm")
    expect(dialog).to_contain_text(f"Cancel the drain of worker {worker.pk}?")
    expect(dialog).to_contain_text("stays RUNNING")
    dialog.get_by_role("button", name="Let it drain").click()
    expect(dialog).to_be_hidden()
    assert Worker.objects.get(pk=worker.pk).state == WorkerState.DRAINING

    card.get_by_role("button", name="Cancel drain").click()
    dialog.get_by_role("button", name="Keep it running").click()
    expect(page.locator("#cr-flash")).to_contain_text(
        f"Cancelled the drain of worker {worker.pk}")
    expect(card.locator(".cr-badge")).to_have_text("RUNNING")
    expect(card.get_by_role("button", name="Drain")).to_be_enabled()

    gate.touch()
    second = enqueue("record", "after")
    wait_for(lambda: Task.objects.get(pk=second.pk).state == TaskState.SUCCEEDED, timeout=15)
    assert Task.objects.get(pk=first.pk).state == TaskState.SUCCEEDED
    assert Task.objects.get(pk=second.pk).worker_id == worker.pk


# A poll that lands while a dialog asks: it would replace the button whose request the
# dialog confirms, and htmx drops a request from an element no longer in the page.
REFRESH_NOW = """() => new Promise((done) => {
  const body = document.getElementById("cr-body");
  body.addEventListener("htmx:afterRequest", () => setTimeout(done, 100), {once: true});
  htmx.trigger(body, "cr-refresh");
})"""


def test_a_confirmed_action_is_sent_though_a_refresh_answered_while_its_dialog_asked(
    page: Page,
) -> None:
    from workers.models import PausedQueue

    remote_worker()
    enqueue("noop")
    log_in(page, STATUS)
    page.locator('[data-cr-action="pause"]').first.click()
    dialog = page.locator("#cr-confirm")
    expect(dialog).to_be_visible()

    page.evaluate(REFRESH_NOW)
    dialog.locator("#cr-confirm-ok").click()

    expect(page.locator("#cr-flash")).to_contain_text("Paused queue default")
    assert PausedQueue.objects.filter(name="default").exists()

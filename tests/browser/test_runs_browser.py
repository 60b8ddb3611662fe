"""A run's admin page in a real Chromium: its graph by dependency level follows the
database, shows each task's worker and node and the lock it waits for, and pauses,
resumes and cancels the run once the operator confirms."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import wait_for
from workers import runs
from workers.models import Run, Task, Worker
from workers.models.run import RunState
from workers.states import TaskState, WorkerState
from workers.web import admin_runs

from .conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)

NOOP = "tests.testapp.tasks.noop"


@pytest.fixture(autouse=True)
def fast_run_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_runs, "POLL_SECONDS", 1)


def diamond(**extra: Any) -> Run:
    return runs.submit({"name": "nightly", **extra, "tasks": [
        {"name": "A", "task": NOOP},
        {"name": "B", "task": NOOP, "depends_on": ["A"]},
        {"name": "C", "task": NOOP, "depends_on": ["A"], "locks": ["/data/out"]},
        {"name": "D", "task": NOOP, "depends_on": ["B", "C"]},
    ]})


def page_of(run: Run) -> str:
    return f"/admin/workers/run/{run.pk}/change/"


def node(page: Page, name: str) -> Any:
    return page.locator(f".cr-run-node[data-name='{name}']")


def test_the_graph_is_drawn_by_level_and_follows_the_database(page: Page) -> None:
    run = diamond()
    log_in(page, page_of(run))

    levels = page.locator(".cr-run-level")
    expect(levels).to_have_count(3)
    expect(levels.nth(0).locator(".cr-run-node-name")).to_have_text(["A"])
    expect(node(page, "A")).to_have_attribute("data-state", "queued")
    expect(levels.nth(1).locator(".cr-run-node-name")).to_have_text(["B", "C"])
    expect(levels.nth(2).locator(".cr-run-node-name")).to_have_text(["D"])
    expect(node(page, "D").locator(".cr-run-node-after")).to_have_text("after B, C")
    expect(page.locator("#cr-run-done")).to_have_text("0 of 4 tasks done (0%)")

    worker = Worker.objects.create(node="rack-7", state=WorkerState.RUNNING)
    Task.objects.filter(run=run, name="A").update(state=TaskState.RUNNING, worker=worker)
    expect(node(page, "A")).to_have_attribute("data-state", "running")  # the next poll
    expect(node(page, "A").locator(".cr-run-node-worker")).to_have_text(
        f"worker {worker.pk} · node: rack-7")
    a_colour = node(page, "A").evaluate("el => getComputedStyle(el).backgroundColor")
    d_colour = node(page, "D").evaluate("el => getComputedStyle(el).backgroundColor")
    assert a_colour != d_colour, "running and waiting are told apart by colour"

    Task.objects.filter(run=run, name="A").update(state=TaskState.SUCCEEDED)
    expect(node(page, "A")).to_have_attribute("data-state", "succeeded")
    expect(page.locator("#cr-run-done")).to_have_text("1 of 4 tasks done (25%)")


def test_a_task_waiting_for_a_lock_shows_its_holder(page: Page) -> None:
    holder = runs.submit({"name": "holder", "tasks": [
        {"name": "H", "task": NOOP, "locks": ["/data/out"]}]})
    waiter = runs.submit({"name": "waiter", "tasks": [
        {"name": "W", "task": NOOP, "locks": ["/data/out/part-1"]}]})
    held_by = Task.objects.get(run=holder, name="H")
    log_in(page, page_of(waiter))

    expect(node(page, "W")).to_have_attribute("data-state", "waiting")
    expect(node(page, "W").locator(".cr-run-node-lock")).to_have_text(
        f"waits for lock /data/out/part-1 held by task {held_by.pk} ('H' of run {holder.pk})")


def test_pause_resume_and_cancel_are_asked_first(page: Page) -> None:
    run = diamond()
    log_in(page, page_of(run))
    state = page.locator("#cr-run-state")
    expect(state).to_have_text("running")

    asked: list[str] = []

    def dismiss(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.get_by_role("button", name="Cancel run").click()
    wait_for(lambda: asked)
    assert asked[0].startswith(f"Cancel run {run.pk} nightly?")
    expect(state).to_have_text("running")
    assert Run.objects.get(pk=run.pk).state == RunState.RUNNING, "dismissed: nothing done"

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Pause").click()
    expect(state).to_have_text("paused")
    flash = page.locator(".cr-run-flash")
    expect(flash).to_contain_text(f"Paused run {run.pk}")
    assert Run.objects.get(pk=run.pk).state == RunState.PAUSED
    # The body polls on: the flash outlives the next refresh (it used to go with it, a
    # message an operator could miss and CI once did).
    page.evaluate("document.querySelector('#cr-run-body').dataset.before = 'poll'")
    page.wait_for_function("!document.querySelector('#cr-run-body').dataset.before")
    expect(flash).to_contain_text(f"Paused run {run.pk}")
    expect(node(page, "A")).to_have_attribute("data-state", "waiting")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Resume").click()
    expect(state).to_have_text("running")
    expect(node(page, "A")).to_have_attribute("data-state", "queued")

    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel run").click()
    expect(state).to_have_text("cancelled")
    expect(page.locator(".cr-run-node[data-state='cancelled']")).to_have_count(4)
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    assert page.locator("#cr-run-body").get_attribute("hx-trigger") is None, "ended: no polls"
    assert Run.objects.get(pk=run.pk).state == RunState.CANCELLED


def test_the_runs_list_links_each_run_to_its_page(page: Page) -> None:
    run = diamond()
    log_in(page, "/admin/workers/run/")
    row = page.locator("#result_list tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator(".cr-badge")).to_have_text("running")
    expect(row).to_contain_text("0/4")
    row.get_by_role("link", name="nightly").click()
    page.wait_for_url(f"**{page_of(run)}")
    expect(page.locator(".cr-run-level")).to_have_count(3)

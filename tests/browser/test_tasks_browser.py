"""The task views in a real Chromium: the list follows the database while open and stops
when paused, bulk cancel confirms with its count, a running task's page follows it, and
the list fits 1366 and 420 px."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Locator, Page, expect

from workers.models import Task, Worker
from workers.states import TaskState, WorkerState

from .conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)

TASKS = "/admin/workers/task/"
COUNT_CHECKS = """() => {
  window.__checks = 0;
  window.__rows = 0;
  const check = window.crucibleTasks.shouldPoll;
  window.crucibleTasks.shouldPoll = () => { window.__checks += 1; return check(); };
  document.addEventListener("htmx:beforeRequest", (event) => {
    if (event.detail.elt.id === "cr-task-rows") window.__rows += 1;
  });
}"""


def make(func_path: str = "app.jobs.run", **fields: Any) -> Task:
    return Task.objects.create(func_path=func_path, timeout=60, **fields)


def state_of(page: Page, task: Task) -> Locator:
    return page.locator(f"#result_list tr:has(a[href*='/task/{task.pk}/change/']) .cr-badge")


def test_the_task_list_follows_the_database_and_pausing_stops_it(page):
    task = make()
    log_in(page, TASKS)
    expect(state_of(page, task)).to_have_text("QUEUED")

    Task.objects.filter(pk=task.pk).update(
        state=TaskState.RUNNING, progress=0.25,
        last_attempted_at=timezone.now() - timedelta(seconds=60),
    )
    expect(state_of(page, task)).to_have_text("RUNNING")  # no reload: the rows refreshed
    expect(page.locator("#result_list .cr-eta")).to_contain_text(" left")  # ETA beside progress

    page.click("#cr-pause")
    expect(page.locator("#cr-pause")).to_have_attribute("aria-pressed", "true")
    page.evaluate(COUNT_CHECKS)
    Task.objects.filter(pk=task.pk).update(state=TaskState.SUCCEEDED,
                                           finished_at=timezone.now())
    page.wait_for_function("window.__checks >= 3")  # three poll periods went by, paused
    assert page.evaluate("window.__rows") == 0
    expect(state_of(page, task)).to_have_text("RUNNING")
    expect(page.locator("#cr-fresh")).to_contain_text("Paused")

    page.reload()  # the pause is remembered
    expect(page.locator("#cr-pause")).to_have_text("Resume")
    Task.objects.filter(pk=task.pk).update(state=TaskState.FAILED)
    page.evaluate(COUNT_CHECKS)
    page.wait_for_function("window.__checks >= 2")
    expect(state_of(page, task)).to_have_text("SUCCEEDED")

    page.click("#cr-pause")  # resume
    expect(state_of(page, task)).to_have_text("FAILED")
    expect(page.locator("#cr-fresh")).to_contain_text("Updated")


def test_a_selected_row_is_not_swept_away_by_a_refresh(page):
    first, second = make(), make()
    log_in(page, TASKS)
    page.check(f"#result_list tr:has(a[href*='/task/{first.pk}/change/']) input.action-select")
    page.evaluate(COUNT_CHECKS)
    Task.objects.filter(pk=second.pk).update(state=TaskState.CANCELLED)
    page.wait_for_function("window.__checks >= 2")
    assert page.evaluate("window.__rows") == 0
    expect(page.locator(".action-counter")).to_contain_text("1 of 2 selected")
    page.uncheck(f"#result_list tr:has(a[href*='/task/{first.pk}/change/']) input.action-select")
    expect(state_of(page, second)).to_have_text("CANCELLED")
    # After a refresh the admin's selection still works on the new rows.
    page.check(f"#result_list tr:has(a[href*='/task/{second.pk}/change/']) input.action-select")
    expect(page.locator(".action-counter")).to_contain_text("1 of 2 selected")


def test_bulk_cancel_says_how_many_then_cancels_them(page):
    gpu = [make(queue="gpu") for _ in range(3)]
    finished = make(queue="gpu", state=TaskState.SUCCEEDED, finished_at=timezone.now())
    other = make(queue="default")
    log_in(page, f"{TASKS}?queue=gpu")
    page.click("#cr-bulk-cancel")
    expect(page.locator("#cr-bulk-count")).to_have_text("3")
    expect(page.locator("#cr-bulk-summary")).to_contain_text("1 already finished: left alone")
    expect(page.locator("#cr-bulk-confirm")).to_have_value("Cancel 3 task(s)")
    page.click("#cr-bulk-confirm")
    expect(page.locator(".messagelist")).to_contain_text("Cancelled 3 task(s).")
    for task in gpu:
        expect(state_of(page, task)).to_have_text("CANCELLED")
    states = dict(Task.objects.values_list("pk", "state"))
    assert {states[t.pk] for t in gpu} == {TaskState.CANCELLED}
    assert states[finished.pk] == TaskState.SUCCEEDED and states[other.pk] == TaskState.QUEUED


def test_a_running_tasks_page_follows_it_until_it_ends(page):
    worker = Worker.objects.create(node="n", state=WorkerState.RUNNING)
    task = make(state=TaskState.RUNNING, worker=worker, progress=0.1,
                last_attempted_at=timezone.now() - timedelta(seconds=10))
    log_in(page, f"{TASKS}{task.pk}/change/")
    page.evaluate("window.__same = true")
    Task.objects.filter(pk=task.pk).update(progress=0.5)
    expect(page.locator(".field-progress_bar .cr-bar-label")).to_have_text("50 %")
    assert page.evaluate("window.__same === true")  # followed without a reload
    Task.objects.filter(pk=task.pk).update(state=TaskState.SUCCEEDED, progress=1.0,
                                           finished_at=timezone.now())
    expect(page.locator(".field-state_badge .cr-badge")).to_have_text("SUCCEEDED")


@pytest.mark.parametrize("width", [1366, 420])
def test_the_task_list_fits_and_shows_state(page, width):
    worker = Worker.objects.create(id=12345, node="node-a", state=WorkerState.RUNNING)
    make("simulations.kinds.slab.a_rather_long_function_name_for_a_task", priority=5,
         id=1234567,  # a million tasks and more: long ids must fit too
         queue="gpu-large", state=TaskState.RUNNING, worker=worker, progress=0.37,
         last_attempted_at=timezone.now() - timedelta(minutes=7))
    make(run_after=timezone.now() + timedelta(hours=2))
    make(state=TaskState.SUCCEEDED, finished_at=timezone.now(), worker=worker)
    page.set_viewport_size({"width": width, "height": 900})
    log_in(page, TASKS)
    sizes = page.evaluate("""() => {
      const results = document.querySelector('#changelist .results');
      return {page: document.documentElement.scrollWidth, view: window.innerWidth,
              table: results.scrollWidth, box: results.clientWidth};
    }""")
    assert sizes["page"] <= sizes["view"], sizes
    assert sizes["table"] <= sizes["box"], sizes  # no column behind a horizontal scroll
    badges = page.locator("#result_list .cr-badge")
    expect(badges).to_have_count(3)
    for index in range(3):
        box = badges.nth(index).bounding_box()
        assert box is not None and box["x"] + box["width"] <= width
    expect(page.locator("#result_list")).to_contain_text("SCHEDULED")
    if width == 1366:
        for column in ("Progress", "Worker", "Created"):
            expect(page.locator("#result_list thead")).to_contain_text(column)


def test_the_simulation_list_follows_its_tasks(page):
    from simulations.models import Simulation

    task = make("simulations.kinds.slab.run", state=TaskState.RUNNING, progress=0.2)
    sim = Simulation.objects.create(kind="slab", name="Hot kiln", memory_mb=64, task=task)
    log_in(page, "/admin/simulations/simulation/")
    row = page.locator(f"#result_list tr:has(a[href*='/simulation/{sim.pk}/change/'])")
    expect(row.locator(".sim-state")).to_have_text("running")
    Task.objects.filter(pk=task.pk).update(state=TaskState.SUCCEEDED, progress=1.0)
    expect(row.locator(".sim-state")).to_have_text("succeeded")  # no reload

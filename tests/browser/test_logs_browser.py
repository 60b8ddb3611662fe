"""Logs in a real Chromium: a running task's lines appear on its page without a reload,
pause and resume, the poll stops when the attempt ends, and the download is exactly that
attempt's lines, none of another task's run at the same time by the same pool."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import wait_for
from workers import queue
from workers.models import Task
from workers.runtime import logs as files
from workers.spec import TaskSpec
from workers.states import TaskState

from .conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)

PRINT_UNTIL = "tests.testapp.log_tasks.print_until"


def start_printing(runtime_dir: Path, tag: str) -> tuple[Task, Path]:
    stop = runtime_dir / f"stop-{tag}"
    task = queue.enqueue(TaskSpec(func_path=PRINT_UNTIL, args=[tag, str(stop), 0.1]))
    return task, stop


def running(task: Task) -> Any:
    return wait_for(
        lambda: Task.objects.filter(pk=task.pk, state=TaskState.RUNNING).first(), timeout=30
    )


def lines_in(path: Path) -> int:
    try:
        return path.read_text().count("\n")
    except FileNotFoundError:
        return 0


def shown_numbers(page: Page, tag: str) -> list[int]:
    text = page.locator("#cr-log-lines").inner_text()
    return [int(n) for n in re.findall(rf"{tag} line (\d+)", text)]


def log_polls(page: Page) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if "/log/?" in r.url else None)
    return seen


def wait_in_browser(page: Page, predicate: Any, timeout: float = 20.0) -> None:
    for _ in range(int(timeout * 10)):
        if predicate():
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"condition not met within {timeout} s")


def test_a_running_tasks_log_follows_pauses_ends_and_downloads(page, workers, runtime_dir,
                                                                crucible):
    alpha, stop_alpha = start_printing(runtime_dir, "alpha")
    beta, stop_beta = start_printing(runtime_dir, "beta")
    workers.start()
    workers.start()
    alpha, beta = running(alpha), running(beta)
    assert alpha.worker_id != beta.worker_id, "two tasks at once, on one pool"
    alpha_file = files.attempt_log_path(crucible.log_dir, alpha.pk, 1)
    beta_file = files.attempt_log_path(crucible.log_dir, beta.pk, 1)
    polls = log_polls(page)

    log_in(page, f"/admin/workers/task/{alpha.pk}/change/")
    page.evaluate("() => { window.crNotReloaded = true; }")
    expect(page.locator("#cr-log-status")).to_contain_text("Following")
    first = max(shown_numbers(page, "alpha"), default=-1)
    wait_in_browser(page, lambda: max(shown_numbers(page, "alpha"), default=-1) >= first + 5)
    assert page.evaluate("() => window.crNotReloaded") is True, "no reload"
    numbers = shown_numbers(page, "alpha")
    assert numbers == list(range(numbers[0], numbers[-1] + 1)), "each line once, in order"

    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#cr-log-status")).to_contain_text("Paused")
    wait_in_browser(page, lambda: polls and not page.evaluate(
        "() => document.querySelector('#cr-log-poll.htmx-request') !== null"))
    asked, shown = len(polls), shown_numbers(page, "alpha")[-1]
    written = lines_in(alpha_file)
    wait_in_browser(page, lambda: lines_in(alpha_file) >= written + 15)  # 1.5 s or more
    assert len(polls) == asked and shown_numbers(page, "alpha")[-1] == shown, "paused"

    page.get_by_role("button", name="Resume").click()
    wait_in_browser(page, lambda: shown_numbers(page, "alpha")[-1] >= shown + 15)

    stop_alpha.touch()
    expect(page.locator("#cr-log-status")).to_have_text(
        "The attempt has ended (task SUCCEEDED).", timeout=20_000)
    expect(page.locator("#cr-log-lines")).to_contain_text("alpha done after")
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    asked = len(polls)
    written = lines_in(beta_file)
    wait_in_browser(page, lambda: lines_in(beta_file) >= written + 15)
    assert len(polls) == asked, "the poll stops when the attempt ends"

    with page.expect_download() as info:
        page.get_by_role("link", name="Download whole log").click()
    download = info.value
    assert download.suggested_filename == f"task-{alpha.pk}-attempt-1.log"
    body = Path(download.path()).read_text()
    assert body == alpha_file.read_text()
    assert "beta" not in body and "alpha line 0\n" in body and "alpha line 2\n" in body
    assert body.endswith(f"alpha done after {Task.objects.get(pk=alpha.pk).result} lines\n")
    stop_beta.touch()


def test_a_workers_log_follows_and_downloads(page, workers, runtime_dir, crucible):
    task, stop = start_printing(runtime_dir, "gamma")
    workers.start()
    task = running(task)
    log_in(page, f"/admin/workers/worker/{task.worker_id}/change/")
    expect(page.locator("#cr-log-title")).to_have_text("Log · Worker log")
    first = max(shown_numbers(page, "gamma"), default=-1)
    wait_in_browser(page, lambda: max(shown_numbers(page, "gamma"), default=-1) >= first + 5)
    expect(page.locator("#cr-log-lines")).to_contain_text(f"[task {task.pk}] gamma line")

    stop.touch()
    wait_for(lambda: Task.objects.get(pk=task.pk).state == TaskState.SUCCEEDED, timeout=20)
    with page.expect_download() as info:
        page.get_by_role("link", name="Download whole log").click()
    assert info.value.suggested_filename == f"worker-{task.worker_id}.log"
    body = Path(info.value.path()).read_text()
    assert f"[task {task.pk}] gamma done after" in body

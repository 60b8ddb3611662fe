"""Fixtures of the browser tier: Debian's Chromium driven by Playwright against live_server.

The live server runs in this process (a thread), so monkeypatching admission works; the
workers it spawns are real ``manage.py runworker`` processes that get the test database
through the environment, and every one of them is gone when a test ends.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import wait_for, worker_env

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "browser-pw"
VIEWPORT = {"width": 1400, "height": 900}
SKIP_REASON = f"browser tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.browser)
            if not CHROMIUM.exists():
                item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop marked as running in this thread, and Django
    # refuses database calls from a thread with a running loop. Nothing runs on that loop
    # between Playwright calls, so the ORM calls of these tests are safe; allow them while
    # Playwright is up, and only then. Module scope: the loop must be gone before the tests
    # of other tiers run in this process (async_to_sync refuses a thread with a loop).
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def operator(django_user_model: Any) -> Any:
    return django_user_model.objects.create_superuser("operator", "op@localhost", PASSWORD)


@contextmanager
def new_tab(chromium: Any, base_url: str, *, width: int = VIEWPORT["width"],
            scheme: str = "light") -> Iterator[Any]:
    """A tab of its own browser context, ``width`` px wide, preferring ``scheme``."""
    context = chromium.new_context(base_url=base_url, color_scheme=scheme,
                                   viewport={**VIEWPORT, "width": width})
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()
        requests_answered()


def requests_answered() -> None:
    """Wait for the live server's requests still in flight (a poll the closed tab sent) to
    be answered: the test database's flush after the test must not run into their locks
    (TRUNCATE against a request's reads is a deadlock on PostgreSQL)."""
    wait_for(lambda: not any("process_request_thread" in thread.name
                             for thread in threading.enumerate()), timeout=30)


@contextmanager
def signed_in_tab(chromium: Any, base_url: str, next_url: str = "/admin/", *,
                  width: int = VIEWPORT["width"], scheme: str = "light") -> Iterator[Any]:
    """:func:`new_tab`, signed in as the operator and showing ``next_url``."""
    with new_tab(chromium, base_url, width=width, scheme=scheme) as tab:
        log_in(tab, next_url)
        yield tab


@pytest.fixture
def page(chromium: Any, live_server: Any, operator: Any, fast_poll: int) -> Iterator[Any]:
    with new_tab(chromium, live_server.url) as tab:
        yield tab


@pytest.fixture
def fast_poll(monkeypatch: pytest.MonkeyPatch) -> int:
    """Poll every second instead of five, so the tests see several polls quickly."""
    from workers.panel import views

    monkeypatch.setattr(views, "POLL_SECONDS", 1)
    return 1


def log_in(page: Any, next_url: str = "/admin/") -> None:
    page.goto(f"/admin/login/?next={next_url}")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"**{next_url}")


def set_task(task_id: int | None, **fields: object) -> None:
    from workers.models import Task

    assert task_id is not None
    Task.objects.filter(pk=task_id).update(**fields)


def finish_simulation(simulation: Any) -> None:
    """Run the kind in this process (files, result), then mark its task as done."""
    from django.utils import timezone

    from simulations.kinds import slab
    from workers.states import TaskState

    slab.run.call(simulation_id=simulation.pk)
    set_task(simulation.task_id, state=TaskState.SUCCEEDED, progress=1.0,
             finished_at=timezone.now())


Colour = tuple[int, int, int]


def rgb(text: str) -> Colour:
    """``rgb(1, 2, 3)``, ``rgba(1, 2, 3, 1)`` or ``#010203`` as a triple."""
    if text.startswith("#"):
        return (int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16))
    red, green, blue = (int(float(part)) for part in re.findall(r"[\d.]+", text)[:3])
    return (red, green, blue)


def luminance(colour: Colour) -> float:
    """WCAG 2 relative luminance."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    red, green, blue = (linear(channel) for channel in colour)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(one: Colour | str, other: Colour | str) -> float:
    """WCAG 2 contrast ratio of two colours (triples or CSS colour texts)."""
    high, low = sorted((luminance(rgb(c) if isinstance(c, str) else c) for c in (one, other)),
                       reverse=True)
    return (high + 0.05) / (low + 0.05)


class Spawned:
    """Lets the live server spawn real workers, and makes sure every one is gone after."""

    def __init__(self, runtime_dir: Path) -> None:
        self.log_dir = str(runtime_dir / "logs")

    def ours(self, pid: int) -> bool:
        """A live ``runworker`` started for this test (its environment names our log dir)."""
        try:
            proc = psutil.Process(pid)
            return (
                proc.status() != psutil.STATUS_ZOMBIE
                and "runworker" in " ".join(proc.cmdline())
                and proc.environ().get("WORKER_LOG_DIR") == self.log_dir
            )
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return False

    def stop_all(self) -> None:
        from workers.models import Worker
        from workers.pool import launcher

        rows = list(Worker.objects.exclude(pid=None))
        for row in rows:
            if row.is_active:
                launcher.abort(row.pk)
        pids = [row.pid for row in rows if row.pid]
        try:
            wait_for(lambda: not any(self.ours(pid) for pid in pids), timeout=10, every=0.1)
        finally:
            for pid in pids:
                if self.ours(pid):
                    os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any(self.ours(pid) for pid in pids), timeout=5, every=0.1)


@pytest.fixture
def spawning(
    transactional_db: None, crucible: Any, runtime_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Spawned]:
    for name, value in worker_env(runtime_dir).items():
        monkeypatch.setenv(name, value)  # what the web server's environment would hold
    spawned = Spawned(runtime_dir)
    yield spawned
    spawned.stop_all()

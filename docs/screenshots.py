"""Take the README's screenshots of the Worker Status panel.

Serves the project from this process against a throwaway SQLite database, starts three real
workers that run a demo simulation (one of them asked to drain), adds a failed and a drained
worker and some queued and failed tasks, then drives Debian's Chromium with Playwright.
The machine is presented as a 16-core node (admission's core count is patched in this
process), so that memory is the binding limit, as on a typical simulation node; every other
number (memory, processes, heartbeats) is real.

    .venv/bin/python docs/screenshots.py

Writes docs/img/panel.png, panel-dark.png, memory-dialog.png, tasks.png and task.png.
Every process it started is stopped before it returns.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "img"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PASSWORD = "screenshots"
NODE = "lab-node-1"
DEMO = "docs.screenshots.demo_simulation"
WARM_UP_SECONDS = 16
PRESENTED_CORES = 16
BIG_TASK_MB = 48 * 1024  # queued tasks that declare 48 GB: memory binds

logger = logging.getLogger("screenshots")


def demo_simulation(steps: int, pause: float, grow_mb: int) -> int:
    """A stand-in for a slab simulation: allocates memory step by step and reports progress."""
    from workers.context import current

    ctx = current()
    grid = []
    for step in range(steps):
        grid.append(bytearray(grow_mb * 1024 * 1024 // steps))
        time.sleep(pause)
        ctx.progress((step + 1) / steps, f"time step {step + 1} of {steps}")
    return len(grid)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def environment(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=f"sqlite:///{tmp / 'screens.sqlite3'}",
        DEBUG="true",  # serves static files unhashed: no collectstatic needed
        DJANGO_SUPERUSER_PASSWORD=PASSWORD,
        WORKER_NODE_ADDRESS=NODE,
        WORKER_LOG_DIR=str(tmp / "logs"),
        WORKER_WORK_DIR=str(tmp / "work"),
        WORKER_DOORBELL_DIR=str(tmp / "bell"),
        WORKER_HEARTBEAT_INTERVAL="1",
        WORKER_POLL_INTERVAL="0.5",
        WORKER_MAX_COUNT="8",
        PYTHONUNBUFFERED="1",
    )
    return env


@contextlib.contextmanager
def server(port: int) -> Iterator[str]:
    """Serve the project, static files included, from a thread of this process."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    httpd = ThreadedWSGIServer(("127.0.0.1", port), WSGIRequestHandler)
    httpd.set_app(StaticFilesHandler(get_wsgi_application()))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)  # the workers this process spawns inherit it
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", "--noinput", verbosity=0)
    call_command("ensure_superuser")

    from workers.pool import admission

    admission._physical_cores = lambda: PRESENTED_CORES


def seed_history() -> int:
    """Rows an operator would see after a day's work: ended workers, queued and failed tasks."""
    from django.utils import timezone

    from workers.models import Task, Worker
    from workers.states import TaskState, WorkerState

    now = timezone.now()
    crashed = Worker.objects.create(
        state=WorkerState.FAILED,
        node=NODE,
        pid=48213,
        queues=["default"],
        spawned=True,
        started_at=now - timedelta(minutes=52),
        stopped_at=now - timedelta(minutes=7),
        last_heartbeat=now - timedelta(minutes=7),
        rss_bytes=23 * 2**30 + 2**29,
        cpu_percent=99.0,
        exit_code=-9,
        failure_reason="Process gone: it exited without saying so (killed, crashed or out "
        "of memory).",
        log_tail="INFO slab: time step 812 of 2000, residual 3.1e-05\n"
        "INFO slab: refining mesh around the melt front (4.2M cells)\n"
        "INFO slab: time step 813 of 2000, residual 2.9e-05\n"
        "WARNING meter: task RSS 23.4 GB, machine available 0.6 GB",
    )
    Worker.objects.create(
        state=WorkerState.DEAD,
        node=NODE,
        pid=47990,
        queues=["default"],
        spawned=True,
        started_at=now - timedelta(hours=1, minutes=5),
        stopped_at=now - timedelta(minutes=21),
        last_heartbeat=now - timedelta(minutes=21),
        rss_bytes=81 * 2**20,
        exit_code=0,
        failure_reason="drained by operator",
    )
    for queue, count, memory_mb in (("gpu", 3, None), ("large-memory", 2, BIG_TASK_MB)):
        for _ in range(count):
            Task.objects.create(
                func_path=DEMO, queue=queue, timeout=3600, args=[10, 1, 10], memory_mb=memory_mb
            )
    Task.objects.create(
        func_path=DEMO,
        queue="default",
        timeout=3600,
        state=TaskState.WAITING,
        pending_dependencies=1,
    )
    return failed_task(now, crashed.pk)


def failed_task(now: datetime, worker_id: int) -> int:
    """A task that took its worker down three times: quarantined, with every attempt."""
    from workers.models import Task, TaskAttempt
    from workers.states import Outcome, TaskState

    reason = "Process gone: it exited without saying so (killed, crashed or out of memory)."
    task = Task.objects.create(
        func_path=DEMO,
        queue="default",
        timeout=3600,
        state=TaskState.FAILED,
        args=[2000, 1, 0],
        attempt=3,
        crash_count=3,
        max_attempts=3,
        progress=0.41,
        progress_message="time step 813 of 2000",
        peak_rss_bytes=23 * 2**30 + 2**29,
        started_at=now - timedelta(hours=2, minutes=40),
        last_attempted_at=now - timedelta(minutes=52),
        finished_at=now - timedelta(minutes=7),
        quarantined_at=now - timedelta(minutes=7),
        error=f"Quarantined: took its worker down 3 times. Last: {reason}",
    )
    runs = [(160, 112, 21.9), (105, 60, 23.1), (52, 7, 23.5)]
    for number, (began, ended, peak_gb) in enumerate(runs, start=1):
        TaskAttempt.objects.create(
            task=task,
            number=number,
            worker_id=worker_id if number == 3 else None,
            worker_label=f"worker {worker_id if number == 3 else number + 40}",
            started_at=now - timedelta(minutes=began),
            finished_at=now - timedelta(minutes=ended),
            outcome=Outcome.WORKER_LOST,
            error=reason,
            peak_rss_bytes=int(peak_gb * 2**30),
            log_tail="INFO slab: refining mesh around the melt front (4.2M cells)\n"
            f"WARNING meter: task RSS {peak_gb:.1f} GB, machine available 0.6 GB",
        )
    return task.pk


def start_workers() -> list[int]:
    from workers import queue
    from workers.pool import launcher
    from workers.spec import TaskSpec

    for grow in (220, 140, 90):
        queue.enqueue(TaskSpec(func_path=DEMO, args=[400, 0.3, grow], timeout=3600))
    for _ in range(4):
        queue.enqueue(TaskSpec(func_path=DEMO, args=[10, 0.1, 10], timeout=3600, priority=-1))
    return [worker.pk for worker in launcher.add(3, force=True)]


def stop_workers(ids: list[int]) -> None:
    from workers.models import Worker
    from workers.pool import launcher, processes

    for worker_id in ids:
        launcher.abort(worker_id)
    deadline = time.monotonic() + 10
    rows = list(Worker.objects.filter(pk__in=ids))
    while time.monotonic() < deadline and any(
        processes.is_worker_process(row.pid, row.process_started_at)
        for row in rows
        if row.process_started_at
    ):
        time.sleep(0.2)
        rows = list(Worker.objects.filter(pk__in=ids))
    for row in Worker.objects.filter(pk__in=ids):
        launcher.kill(row)


def wait_running(ids: list[int]) -> None:
    from workers.models import Worker
    from workers.states import WorkerState

    deadline = time.monotonic() + 30
    while Worker.objects.filter(pk__in=ids, state=WorkerState.RUNNING).count() < len(ids):
        if time.monotonic() > deadline:
            raise RuntimeError("the demo workers did not start")
        time.sleep(0.2)


def shoot(base: str, out: Path, task_id: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000}, device_scale_factor=1)
        page.goto(f"{base}/admin/login/?next=/admin/worker-status/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_selector(".cr-card--draining")
        page.click("#cr-refresh")
        page.wait_for_timeout(800)
        page.screenshot(path=str(out / "panel.png"), full_page=True)

        page.click("#cr-add")
        page.wait_for_selector("#cr-memory[open]")
        page.wait_for_timeout(300)
        page.screenshot(path=str(out / "memory-dialog.png"))
        page.click("#cr-memory [data-cr-close]")

        page.emulate_media(color_scheme="dark")
        page.reload()
        page.wait_for_selector(".cr-card")
        page.screenshot(path=str(out / "panel-dark.png"), full_page=True)
        page.emulate_media(color_scheme="light")

        page.goto(f"{base}/admin/workers/task/")
        page.click("#toggle-nav-sidebar")  # lists are wide: give them the room
        page.screenshot(path=str(out / "tasks.png"))

        page.goto(f"{base}/admin/workers/task/{task_id}/change/")
        page.wait_for_selector(".inline-group")
        page.screenshot(path=str(out / "task.png"), full_page=True)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("django.server").setLevel(logging.WARNING)
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install chromium")
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="cr-shots-"))
    env = environment(tmp)
    ids: list[int] = []
    try:
        setup_django(env)
        task_id = seed_history()
        with server(free_port()) as base:
            ids = start_workers()
            wait_running(ids)
            time.sleep(WARM_UP_SECONDS)  # heartbeats for the sparklines, progress
            from workers.pool import launcher

            launcher.drain(ids[-1])
            shoot(base, args.out, task_id)
            logger.info("wrote %s", ", ".join(sorted(p.name for p in args.out.glob("*.png"))))
    finally:
        if ids:
            stop_workers(ids)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

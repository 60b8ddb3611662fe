"""``manage.py dashboard``: one frame when piped; full screen on a terminal until its
duration ends."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys

import pytest
from django.core.management import call_command
from django.utils import timezone

from tests.conftest import ROOT, worker_env
from workers import runs
from workers.models import Task, Worker
from workers.states import TaskState, WorkerState

from .helpers import TASKS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def world() -> None:
    runs.submit({"name": "nightly", "tasks": [
        {"name": "A", "task": f"{TASKS}.noop"},
        {"name": "B", "task": f"{TASKS}.noop", "depends_on": ["A"]}]})
    Worker.objects.create(node="rack-7", state=WorkerState.RUNNING)
    Task.objects.create(func_path=f"{TASKS}.fail_always", timeout=1, state=TaskState.FAILED,
                        error="ValueError: boom\nmore", finished_at=timezone.now())


def test_piped_it_prints_one_frame_of_everything(crucible):
    world()
    out = io.StringIO()
    call_command("dashboard", stdout=out)
    frame = out.getvalue()

    assert "Workers: 1 idle / 0 busy / 0 offline" in frame
    assert "Runs: 1 active / 1 total" in frame
    for part in ("Runs", "nightly", "0/2", "Queues", "Recent failures", "ValueError: boom",
                 "rack-7"):
        assert part in frame, part
    compact = io.StringIO()
    call_command("dashboard", "--compact", stdout=compact)
    assert "nightly" in compact.getvalue() and "Recent failures" not in compact.getvalue()


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the terminal's other end closed (the process ended)
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_on_a_terminal_it_takes_the_screen_and_stops_after_its_duration(crucible, runtime_dir):
    world()
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "dashboard", "--duration", "1.5",
         "--refresh", "0.3"],
        cwd=ROOT, env={**worker_env(runtime_dir), "COLUMNS": "120", "LINES": "40"},
        stdin=follower, stdout=follower, stderr=follower,
    )
    os.close(follower)
    screen = _read_all(leader).decode(errors="replace")
    os.close(leader)

    assert proc.wait(timeout=60) == 0, screen[-2000:]
    assert "\x1b[?1049h" in screen and "\x1b[?1049l" in screen, "alternate screen, restored"
    assert "nightly" in screen and "Crucible" in screen

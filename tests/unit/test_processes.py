"""A worker's PID check survives a stepped wall clock and still refuses a reused PID."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from tests.conftest import wait_for
from workers.pool import processes

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="the start time since boot is read from Linux's /proc; elsewhere psutil's is used",
)


@pytest.fixture
def worker_like() -> Iterator[subprocess.Popen[bytes]]:
    """A live process whose command line names ``runworker``, as a worker's does."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "runworker"])
    wait_for(lambda: "runworker" in psutil.Process(proc.pid).cmdline())  # exec'd
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def step_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Step the wall clock an hour ahead, as far as psutil can tell: it moves /proc/stat's btime."""
    from psutil import _pslinux

    stepped = _pslinux.boot_time() + 3600.0
    monkeypatch.setattr(_pslinux, "boot_time", lambda: stepped)


def test_a_live_worker_is_recognised_after_the_wall_clock_is_stepped(worker_like, request):
    recorded = processes.create_time(worker_like.pid)
    psutil_before = psutil.Process(worker_like.pid).create_time()
    request.getfixturevalue("step_wall_clock")

    assert psutil.Process(worker_like.pid).create_time() == pytest.approx(psutil_before + 3600)
    assert processes.create_time(worker_like.pid) == recorded
    assert processes.is_worker_process(worker_like.pid, recorded)


def test_a_reused_pid_is_still_refused_after_the_wall_clock_is_stepped(worker_like, request):
    # The row was written by an earlier process that had this PID and started 100 s earlier.
    recorded = processes.create_time(worker_like.pid) - 100.0
    request.getfixturevalue("step_wall_clock")

    assert not processes.is_worker_process(worker_like.pid, recorded)
    assert processes.signal_worker(worker_like.pid, recorded, signal.SIGKILL) is False
    assert worker_like.poll() is None, "the process that took the PID over was not signalled"


def test_this_process_identity_does_not_move_with_the_wall_clock(request):
    before = processes.identity()
    request.getfixturevalue("step_wall_clock")
    assert processes.identity() == before


def test_a_gone_process_is_no_worker():
    proc = subprocess.Popen([sys.executable, "-c", "pass", "runworker"])
    recorded = processes.create_time(proc.pid)
    proc.wait()
    assert not processes.is_worker_process(proc.pid, recorded)
    with pytest.raises(psutil.NoSuchProcess):
        processes.create_time(proc.pid)


TREE = """
import subprocess, sys, time
sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
inner = f"import subprocess, time; subprocess.Popen({sleep!r}); time.sleep(60)"
subprocess.Popen([sys.executable, "-c", inner])
subprocess.Popen(sleep)
time.sleep(60)
"""


def test_a_tree_is_walked_from_its_root_alone_and_finds_what_psutil_finds():
    root = subprocess.Popen([sys.executable, "-c", TREE])
    try:
        below = wait_for(lambda: len(psutil.Process(root.pid).children(recursive=True)) == 3
                         and psutil.Process(root.pid).children(recursive=True), timeout=30)
        walked = processes.descendant_pids(root.pid)
        assert walked is not None, "this kernel lists each thread's children"
        assert sorted(walked) == sorted(proc.pid for proc in below), "children, grandchild"
    finally:
        for proc in processes.descendants(root.pid):
            proc.kill()
        root.kill()
        root.wait()
    assert processes.descendant_pids(root.pid) == [], "a gone process has none"

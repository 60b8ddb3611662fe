"""The sentinel: a process of its own that stops a task whose worker cannot."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from tests.conftest import wait_for
from workers.runtime.sentinel import Sentinel


@pytest.fixture
def group() -> Iterator[subprocess.Popen[bytes]]:
    """A process leading its own group, with a child in it: a task that started a program."""
    proc = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
         "'import time; time.sleep(60)']); time.sleep(60)"],
        start_new_session=True,
    )
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@pytest.fixture
def sentinel() -> Iterator[Sentinel]:
    made = Sentinel.start()
    yield made
    made.close()


def test_it_kills_the_group_when_the_deadline_passes(sentinel, group):
    sentinel.arm(group.pid, time.monotonic() + 0.3)
    assert wait_for(lambda: group.poll() is not None, timeout=10)
    assert group.returncode == -9


def test_a_renewal_moves_the_deadline(sentinel, group):
    sentinel.arm(group.pid, time.monotonic() + 0.3)
    sentinel.arm(group.pid, time.monotonic() + 60)
    sentinel.disarm()
    sentinel.arm(group.pid, time.monotonic() + 60)
    with pytest.raises(subprocess.TimeoutExpired):
        group.wait(timeout=1.0)


def test_it_kills_the_group_when_its_worker_is_gone(sentinel, group):
    sentinel.arm(group.pid, time.monotonic() + 60)
    os.close(sentinel.pipe)  # what a SIGKILL of the supervisor does to the pipe
    assert wait_for(lambda: group.poll() is not None, timeout=10)
    assert wait_for(lambda: not sentinel.alive(), timeout=10)


def test_disarmed_it_leaves_the_group_alone_and_exits_with_its_worker(sentinel, group):
    sentinel.arm(group.pid, time.monotonic() + 0.2)
    sentinel.disarm()
    sentinel.close()
    assert sentinel.returncode == 0
    assert group.poll() is None


def test_it_is_forked_into_a_session_of_its_own(sentinel):
    """Forked, it shares its worker's pages instead of loading an interpreter of its own
    (bench/README.md has the memory figures); named, so that ps tells it apart."""
    proc = psutil.Process(sentinel.pid)
    assert proc.ppid() == os.getpid()
    assert proc.cmdline() == psutil.Process().cmdline()  # not an interpreter started anew
    # the child names itself and leaves the group a moment after the fork
    assert wait_for(lambda: proc.name() == "sentinel", timeout=10)
    assert wait_for(lambda: os.getsid(sentinel.pid) == sentinel.pid, timeout=10)


def test_it_keeps_no_descriptor_of_its_worker_but_the_pipe(tmp_path):
    with open(tmp_path / "db", "wb") as held:  # a database file, a socket: the worker's own
        made = Sentinel.start()
        try:
            assert wait_for(lambda: len(psutil.Process(made.pid).open_files()) == 0, timeout=10)
            fds = os.listdir(f"/proc/{made.pid}/fd")
            assert str(held.fileno()) not in fds
            assert len(fds) <= 4  # stdin, stdout, stderr and the pipe
        finally:
            made.close()

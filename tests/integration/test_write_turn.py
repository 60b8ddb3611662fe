"""SQLite: a busy worker's success-and-claim waits for the database's write turn.

The turn is an exclusive flock on a file in the doorbell folder: the kernel hands it to
the next waiter as soon as it is let go, where SQLite's busy handler slept a millisecond or
more. Here another open file holds it, as another worker's transaction would.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from django.db import connection

from tests.conftest import wait_for, worker_env
from workers import queue
from workers.models import Worker
from workers.queue import turn
from workers.queue.doorbell import bell_dir
from workers.queue.hotpath import ClaimedTask
from workers.states import Outcome, TaskState, WorkerState

from .helpers import enqueue, task

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'sqlite'",
                       reason="SQLite's write turn: PostgreSQL's writers lock rows instead"),
]


@pytest.fixture
def token(crucible: object) -> ClaimedTask:
    enqueue("add", 1, 2)
    enqueue("add", 3, 4)
    worker = Worker.objects.create(node="here", state=WorkerState.RUNNING)
    claimed = queue.claim_next(worker.pk, ["default"])
    assert claimed is not None
    return claimed


@pytest.fixture
def held() -> Iterator[int]:
    """The turn, held through a file of the test's own, as another process would."""
    path = bell_dir() / "write-turn"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield fd
    os.close(fd)


def hand_over(token: ClaimedTask) -> ClaimedTask | None:
    return queue.succeed_and_claim(token, 3, queue.Ending(Outcome.SUCCEEDED), ["default"])


def test_a_success_waits_for_the_turn_and_commits_once_it_comes(token, held, monkeypatch):
    monkeypatch.setattr(turn, "TURN_WAIT", 60.0)
    states: list[str] = []

    def let_go() -> None:
        time.sleep(0.3)  # the main thread is waiting for the turn by now, or about to
        states.append(task(token.id).state)  # its own connection, in this thread
        connection.close()
        fcntl.flock(held, fcntl.LOCK_UN)

    releaser = threading.Thread(target=let_go)
    releaser.start()
    following = hand_over(token)
    releaser.join()

    assert states == [TaskState.RUNNING.value], "nothing was written while the turn was held"
    assert task(token.id).state == TaskState.SUCCEEDED
    assert following is not None


def test_a_turn_held_too_long_is_passed_by(token, held, monkeypatch):
    """A holder frozen outside its transaction stops no one for longer than TURN_WAIT;
    and the wait's timer leaves another timer of the process (here 100 s) as it was."""
    monkeypatch.setattr(turn, "TURN_WAIT", 0.5)

    def other(signum: int, frame: object) -> None:
        pass

    outer = signal.signal(signal.SIGALRM, other)
    outer_timer = signal.setitimer(signal.ITIMER_REAL, 100.0)
    began = time.monotonic()
    try:
        following = hand_over(token)
        took = time.monotonic() - began
        left, handler = signal.getitimer(signal.ITIMER_REAL)[0], signal.getsignal(signal.SIGALRM)
    finally:
        signal.setitimer(signal.ITIMER_REAL, *outer_timer)
        signal.signal(signal.SIGALRM, outer)

    assert took >= 0.5
    assert task(token.id).state == TaskState.SUCCEEDED
    assert following is not None
    assert handler is other, "the other handler is put back"
    assert 100.0 - took - 1.0 < left <= 100.0 - 0.5, "and its timer, less the wait"


def test_a_process_killed_holding_the_turn_lets_it_go(token, runtime_dir, monkeypatch):
    """The kernel ends a dead process's flock: the next writer does not wait for a timer."""
    monkeypatch.setattr(turn, "TURN_WAIT", 60.0)
    path = bell_dir() / "write-turn"
    path.parent.mkdir(parents=True, exist_ok=True)
    ready = runtime_dir / "holding"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "open(sys.argv[2], 'w').close()\n"
        "time.sleep(600)\n"), str(path), str(ready)])
    wait_for(ready.exists, timeout=30)
    holder.kill()
    holder.wait(timeout=30)
    began = time.monotonic()

    following = hand_over(token)

    assert time.monotonic() - began < 30, "it did not wait for a turn no one holds"
    assert task(token.id).state == TaskState.SUCCEEDED
    assert following is not None


FORKS_AND_DIES = """
import os, signal, sys, time
import django
django.setup()
from workers.queue import turn
assert turn._take(turn._turn_fd(sys.argv[1]))
child = os.fork()  # as a supervisor forks its executor or sentinel
if child == 0:
    time.sleep(600)
    os._exit(0)
with open(sys.argv[2], "w") as out:
    out.write(str(child))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_child_forked_while_the_turn_was_held_does_not_keep_it(crucible: object,
                                                                 runtime_dir: Path) -> None:
    """A supervisor killed holding the turn: its executor, forked from it, lives on a
    moment; its copy of the file must not keep the turn taken meanwhile."""
    path = bell_dir() / "write-turn"
    path.parent.mkdir(parents=True, exist_ok=True)
    told = runtime_dir / "child"
    parent = subprocess.Popen([sys.executable, "-c", FORKS_AND_DIES, str(path), str(told)],
                              env=worker_env(runtime_dir), cwd=ROOT)
    assert parent.wait(timeout=60) == -signal.SIGKILL
    child = int(told.read_text())
    try:
        assert psutil.pid_exists(child), "the child lives on"
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError if kept
        finally:
            os.close(fd)
    finally:
        os.kill(child, signal.SIGKILL)


def test_a_turn_whose_file_cannot_be_had_is_gone_without(token, monkeypatch):
    """The doorbell folder unwritable (here: under a file): the write goes on without."""
    monkeypatch.setattr(turn, "bell_dir", lambda: Path("/dev/null/bell"))
    monkeypatch.setattr(turn, "_BY_DATABASE", {})  # found afresh, not from an earlier test

    following = hand_over(token)

    assert task(token.id).state == TaskState.SUCCEEDED
    assert following is not None

"""PostgreSQL: one worker of a machine listens for its queues' wake-ups and passes them on;
when it ends or dies, another takes its place (``workers.runtime.relay``)."""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import Workers, wait_for, worker_env
from workers.models import Task
from workers.runtime.relay import Relay
from workers.states import TaskState

from .helpers import enqueue, idle_marks, succeeded

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]
LISTENS = "listens for this machine's workers"
COUNT = 3


@pytest.fixture(autouse=True)
def postgres() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; on SQLite an enqueue rings the doorbells "
                    "itself (test_idle_pool.py); this runs in the PostgreSQL pass")


def _listening(workers: Workers) -> list[int]:
    """The workers that have listened for the machine, by their index."""
    return [i for i in range(len(workers.procs)) if LISTENS in workers.output(i)]



def _running(count: int) -> bool:
    return Task.objects.filter(state=TaskState.RUNNING).count() == count



def _start(workers: Workers, runtime_dir: Path, **extra: str) -> int:
    """COUNT idle workers, polling once a minute: within a test only a wake-up finds work.
    Returns the index of the one that listens for the machine."""
    env = worker_env(runtime_dir, **{"WORKER_NODE_CPUS": "8", "WORKER_POLL_INTERVAL": "60",
                                     **extra})
    for _ in range(COUNT):
        workers.start(env=env)
    wait_for(lambda: idle_marks(runtime_dir) == COUNT, timeout=60)
    listening = _listening(workers)
    assert len(listening) == 1, f"workers {listening} listen for the machine"
    return listening[0]


def _picked_up(workers: Workers) -> None:
    arrived = enqueue("noop").pk
    wait_for(functools.partial(succeeded, arrived), timeout=20)


def _others_listen(workers: Workers, gone: int) -> None:
    wait_for(lambda: [i for i in _listening(workers) if i != gone] != [], timeout=30)
    taken = [i for i in _listening(workers) if i != gone]
    assert len(taken) == 1, f"workers {taken} took the place of worker {gone}"


def test_one_worker_of_a_machine_listens_and_wakes_the_others(workers, runtime_dir):
    """Tasks arriving one at a time, each running until the test ends: the one that
    listens takes one and wakes the others for the rest."""
    _start(workers, runtime_dir)
    go = runtime_dir / "go"
    for count in range(1, COUNT + 1):
        enqueue("wait_for_path", str(go))
        wait_for(functools.partial(_running, count), timeout=20)
    go.touch()
    wait_for(lambda: Task.objects.filter(state=TaskState.SUCCEEDED).count() == COUNT,
             timeout=30)


def test_a_frozen_listening_worker_leaves_the_others_their_polls(workers, runtime_dir):
    listening = _start(workers, runtime_dir, WORKER_POLL_INTERVAL="1")
    proc = workers.procs[listening]
    proc.send_signal(signal.SIGSTOP)
    try:
        _picked_up(workers)
    finally:
        proc.send_signal(signal.SIGCONT)
    assert _listening(workers) == [listening], "a frozen worker keeps its place"


def test_when_the_listening_worker_stops_another_listens_at_once(workers, runtime_dir):
    """No heartbeat and no poll within the test: the one that stops rings the others."""
    gone = _start(workers, runtime_dir, WORKER_HEARTBEAT_INTERVAL="60")
    workers.procs[gone].send_signal(signal.SIGTERM)
    assert workers.procs[gone].wait(timeout=30) == 0
    _others_listen(workers, gone)
    _picked_up(workers)


def test_when_the_listening_worker_is_killed_another_listens_at_its_heartbeat(
        workers, runtime_dir):
    gone = _start(workers, runtime_dir)
    os.killpg(workers.procs[gone].pid, signal.SIGKILL)
    workers.procs[gone].wait(timeout=10)
    _others_listen(workers, gone)
    _picked_up(workers)


def test_a_worker_that_cannot_open_the_lock_listens_for_itself(workers, runtime_dir):
    """Where the lock's file cannot be opened, each worker listens on its queues as before."""
    Relay(["default"], 0).path.mkdir(parents=True)  # a folder in its place: no file opens
    env = worker_env(runtime_dir, WORKER_NODE_CPUS="8", WORKER_POLL_INTERVAL="60")
    for _ in range(2):
        workers.start(env=env)
    wait_for(lambda: idle_marks(runtime_dir) == 2, timeout=60)
    alone = [i for i in range(2) if "listens for its queues itself" in workers.output(i)]
    assert alone == [0, 1]
    _picked_up(workers)


TICKED = "ran its machine's tick"


def _ticks(workers: Workers, index: int) -> int:
    return workers.output(index).count(TICKED)


def test_the_listening_worker_leaves_the_tick_to_the_others(workers, runtime_dir):
    """A wake-up it heard during a tick waited for the tick's end: while the others take
    the machine's tick, the worker that listens runs none."""
    # Half a second: the listener takes the tick only after 1.25 s without one, which two
    # other workers ticking every 0.5 s leave only if both stall that long.
    listening = _start(workers, runtime_dir, WORKER_TICK_INTERVAL="0.5", LOG_LEVEL="DEBUG")
    others = [i for i in range(COUNT) if i != listening]

    def others_ticked(count: int) -> bool:
        return sum(_ticks(workers, i) for i in others) >= count

    wait_for(functools.partial(others_ticked, 2), timeout=60)
    before = _ticks(workers, listening)
    wait_for(functools.partial(others_ticked, 10), timeout=60)
    assert _ticks(workers, listening) == before
    _picked_up(workers)


def test_a_worker_alone_on_its_machine_ticks_though_it_listens(workers, runtime_dir):
    env = worker_env(runtime_dir, WORKER_TICK_INTERVAL="0.2", LOG_LEVEL="DEBUG")
    workers.start(env=env)
    wait_for(lambda: LISTENS in workers.output(0), timeout=60)
    wait_for(lambda: _ticks(workers, 0) >= 5, timeout=60)

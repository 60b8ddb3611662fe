"""An idle pool costs the database little: idle workers of one node share their empty looks
at the queue, and the node still looks at least once a poll interval."""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from django.db import connection
from django.utils import timezone

from tests.conftest import FAST, wait_for, worker_env
from tests.tcp_proxy import TcpProxy
from tests.testapp.models import Execution
from workers import queue
from workers.models import Task
from workers.queue.doorbell import Doorbell
from workers.spec import TaskSpec
from workers.states import TaskState

from .helpers import TASKS, enqueue, idle_marks, running_workers, succeeded

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]
POLL = FAST["poll_interval"]
QUIET = "30"  # seconds: heartbeats and ticks stay out of the counted window


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    if connection.vendor != "postgresql":
        pytest.skip("counts the PostgreSQL protocol's messages; runs in the PostgreSQL pass")
    db = connection.settings_dict
    with TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)) as running:
        yield running


def _through(proxy: TcpProxy, runtime_dir: Path) -> dict[str, str]:
    db = connection.settings_dict
    url = f"postgres://{db.get('USER') or 'postgres'}@127.0.0.1:{proxy.port}/{db['NAME']}"
    return worker_env(runtime_dir, DATABASE_URL=url, WORKER_HEARTBEAT_INTERVAL=QUIET,
                      WORKER_TICK_INTERVAL=QUIET)


def test_idle_workers_of_a_node_share_their_empty_looks(workers, runtime_dir, proxy):
    count, window = 6, 4.0
    env = _through(proxy, runtime_dir)
    for _ in range(count):
        workers.start(env=env)
    wait_for(lambda: len(running_workers()) == count, timeout=60)
    time.sleep(2 * POLL)  # past the start-up's own claims
    proxy.reset_counts()
    time.sleep(window)
    counts = proxy.counts()
    statements = counts.get("Q", 0) + counts.get("E", 0)
    unshared = count * window / POLL  # each worker looking every interval: 48
    # The node looks about once an interval. Slack of three times that: a CI run on a busy
    # machine counted 18 (two times was the bound then); unshared, 46 were counted.
    shared = 3 * window / POLL
    assert 0 < statements <= shared, (
        f"{statements} statements in {window} s from {count} idle workers "
        f"(about {unshared:.0f} if each looked for itself): {counts}")


def test_a_task_coming_due_is_still_found_within_a_poll_interval(workers):
    for _ in range(4):
        workers.start()
    wait_for(lambda: len(running_workers()) == 4, timeout=60)
    time.sleep(2 * POLL)  # every worker idle, their looks shared
    due = timezone.now() + timedelta(seconds=1.0)
    later = enqueue("record", "due later", run_after=due)  # its wake-up finds it not due
    wait_for(functools.partial(succeeded, later.pk), timeout=30)
    started = Execution.objects.get(key="due later").at
    late = started - due.timestamp()
    assert 0 <= late < POLL + 2.0, f"started {late:.2f} s after it came due (poll {POLL} s)"


def _logged(runtime_dir: Path, text: str) -> bool:
    return any(text in log.read_text(errors="replace")
               for log in (runtime_dir / "logs").glob("worker_*.log"))


@pytest.mark.parametrize("mode", ["refuse", "hang"])
def test_an_idle_worker_waits_out_a_database_outage_without_spinning(workers, runtime_dir,
                                                                     proxy, mode):
    worker = workers.start(env=_through(proxy, runtime_dir))
    wait_for(lambda: len(running_workers()) == 1, timeout=60)
    # Its row says RUNNING once the server commits, which can be before the worker has read
    # the reply: cut then, and it is the start-up that fails, not the idle wait measured here.
    wait_for(lambda: _logged(runtime_dir, "running on queues"), timeout=30)
    proxy.block(mode)
    proxy.cut()  # its connections break: every claim now fails and is retried, backing off
    process = psutil.Process(worker.pid)
    before = sum(process.cpu_times()[:2])
    time.sleep(3.0)  # a window of the outage, to measure what it costs
    spent = sum(process.cpu_times()[:2]) - before
    proxy.unblock()
    assert worker.poll() is None, "the worker survives the outage"
    assert spent < 0.5, f"an idle worker spent {spent:.2f} s of CPU in 3 s of outage"


WOKEN_EMPTY = "woken by an enqueue, its claim took nothing"




def test_a_worker_marks_itself_idle_while_it_waits(crucible, runtime_dir):
    """Work arriving rings one idle worker, found by its mark (on PostgreSQL, passed on by
    the worker that listens for the machine)."""
    bell = Doorbell(999998)
    bell.idle(["default", "other"])
    marks = idle_marks(runtime_dir)
    bell.busy()
    bell.close()

    assert marks == 2
    assert idle_marks(runtime_dir) == 0


def test_an_enqueue_wakes_one_idle_worker_not_every_one(workers, runtime_dir):
    """Each worker has a doorbell: work arriving rings one idle worker of its queue (on
    PostgreSQL by way of the one worker that listens for the machine), which passes the
    wake-up on once it has taken the task, if more is due; the rest sleep. Rung all, every
    one claimed and all but one took nothing (a herd: 0.3-0.4 ms of CPU each,
    bench/README.md). Here 4 idle workers take 10 tasks that arrive one at a time; with no
    polls in the window, each claim that took nothing is one its worker was woken for."""
    count, arrivals = 4, 10
    env = worker_env(runtime_dir, LOG_LEVEL="DEBUG", WORKER_NODE_CPUS="8",
                     WORKER_POLL_INTERVAL="60")
    for _ in range(count):
        workers.start(env=env)
    wait_for(lambda: idle_marks(runtime_dir) == count, timeout=60)
    for _ in range(arrivals):
        arrived = enqueue("noop").pk
        wait_for(functools.partial(succeeded, arrived), timeout=30)
        wait_for(lambda: idle_marks(runtime_dir) == count, timeout=30)  # all idle again
    empty = sum(workers.output(i).count(WOKEN_EMPTY) for i in range(count))
    # Rung all, 3 a task (30) were counted; passed on whatever was due, one a task (10).
    assert empty <= 2, f"{empty} claims took nothing for {arrivals} tasks"


def test_one_wake_up_for_a_burst_reaches_every_idle_worker_it_needs(workers, runtime_dir):
    """``enqueue_many`` rings once for its queue: the worker reached passes the wake-up on
    as it takes a task, until every task runs. No poll comes to help within the test."""
    count = 4
    env = worker_env(runtime_dir, WORKER_NODE_CPUS="8", WORKER_POLL_INTERVAL="60")
    for _ in range(count):
        workers.start(env=env)
    wait_for(lambda: len(running_workers()) == count, timeout=60)
    wait_for(lambda: idle_marks(runtime_dir) == count, timeout=30)
    go = runtime_dir / "go"
    ids = [t.pk for t in queue.enqueue_many(
        [TaskSpec(func_path=f"{TASKS}.wait_for_path", args=[str(go)]) for _ in range(count)])]
    wait_for(lambda: Task.objects.filter(pk__in=ids, state=TaskState.RUNNING).count() == count,
             timeout=20)
    go.touch()
    wait_for(lambda: Task.objects.filter(pk__in=ids, state=TaskState.SUCCEEDED).count() == count,
             timeout=30)

"""Scheduling by memory with real workers and tasks that really take what they declare.

Each task records when its body began and ended (``Execution`` rows, the executing
process's clock): its memory is in use only between the two, and the node's share is held
from before the first to after the second, so overlaps read from these never understate.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from django.db import transaction

from tests.conftest import FAST, wait_for, worker_env
from tests.testapp.models import Execution
from workers import queue
from workers.models import Task, TaskAttempt
from workers.pool import stamps
from workers.queue.doorbell import FREED, Doorbell
from workers.runtime.supervisor import BLOCKED_ENQUEUE_LOOK
from workers.spec import TaskSpec
from workers.states import Outcome, TaskState

from .helpers import committed

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

NODE = "sched-node"
HOLD = "tests.testapp.sched_tasks.hold"
HOLD_UNTIL = "tests.testapp.sched_tasks.hold_until"
NOOP = "tests.testapp.tasks.noop"
NONE_FITS = "a due task waits, but none fits this node now"


def env(runtime_dir: Path, **extra: str) -> dict[str, str]:
    return worker_env(runtime_dir, **{"WORKER_NODE_ADDRESS": NODE, "WORKER_NODE_MEMORY_MB": "1000",
                                      "WORKER_NODE_CPUS": "8", **extra})


def submit(func_path: str, mb: int, *args: object) -> Task:
    return queue.enqueue(TaskSpec(func_path=func_path, args=[mb, *args], memory_mb=mb,
                                  max_attempts=3, force=True))


def spans() -> dict[int, tuple[float, float]]:
    """Each task's (start, end) from its body's own records."""
    found: dict[int, dict[str, float]] = {}
    for key, task_id, at in Execution.objects.values_list("key", "task_id", "at"):
        if task_id is not None:
            found.setdefault(task_id, {})[key] = at
    return {task_id: (marks["start"], marks["end"]) for task_id, marks in found.items()
            if "start" in marks and "end" in marks}


def peak(intervals: list[tuple[float, float, int]]) -> tuple[int, int]:
    """The largest sum of estimates running at one moment, and how many ran then."""
    events = sorted([(start, 1, mb) for start, _, mb in intervals]
                    + [(end, 0, -mb) for _, end, mb in intervals])  # ends first on ties
    total = running = best = most = 0
    for _, starting, mb in events:
        total += mb
        running += 1 if starting else -1
        if total > best:
            best, most = total, running
    return best, most


def test_three_workers_never_run_more_than_the_nodes_budget(workers, runtime_dir):
    sizes = [600, 300, 300, 500] * 2
    with transaction.atomic():
        jobs = [submit(HOLD, mb, 1.5) for mb in sizes]
    for _ in range(3):
        workers.start("--batch", env=env(runtime_dir))

    assert workers.wait_all(timeout=120) == [0, 0, 0]
    assert {Task.objects.get(pk=job.pk).state for job in jobs} == {TaskState.SUCCEEDED}
    found = spans()
    intervals = [(*found[job.pk], job.memory_estimate_mb) for job in jobs]
    most_mb, together = peak(intervals)
    assert most_mb <= 1000, f"{most_mb} MB of estimates ran at once on a 1000 MB budget"
    assert together >= 2, "tasks that fit together did run together"
    assert committed(NODE)[0] == 0


def test_a_small_task_overtakes_a_blocked_one_until_it_has_waited_too_long(workers,
                                                                        runtime_dir):
    starvation = 2.0
    for _ in range(2):
        workers.start(env=env(runtime_dir, WORKER_MEMORY_STARVATION_S=str(starvation)))
    first = submit(HOLD, 600, 4.0)
    wait_for(lambda: Execution.objects.filter(task_id=first.pk, key="start").exists(),
             timeout=30)
    with transaction.atomic():
        blocked = submit(HOLD, 800, 0.5)
        small = [submit(HOLD, 300, 1.0) for _ in range(10)]

    wait_for(lambda: Task.objects.filter(pk__in=[blocked.pk, *(s.pk for s in small)],
                                         state=TaskState.SUCCEEDED).count() == 11, timeout=90)
    due = Task.objects.get(pk=blocked.pk).created_at.timestamp()
    starts = {task_id: at.timestamp() for task_id, at in TaskAttempt.objects.filter(
        task__in=[blocked, *small]).values_list("task_id", "started_at") if at is not None}
    began = starts[blocked.pk]
    small_starts = [starts[s.pk] for s in small]
    assert any(due < at < began for at in small_starts), "a smaller task overtook it"
    late = [at - due for at in small_starts if due + starvation + 0.5 < at < began]
    assert not late, f"smaller tasks still overtook {late} s after it was due"
    assert any(at > began for at in small_starts), "the rest waited behind it"
    assert began - due < starvation + 4.0 + 1.0 + 5.0, "it started within the bound"


def test_an_ending_wakes_the_nodes_waiting_workers_only_when_it_frees_a_share(
        workers, runtime_dir):
    """A busy worker ends a task and claims the next in one commit: when the next holds
    as much, nothing was freed and a waiting worker woken would only claim in vain (on a
    full node, once per task ended: a third worker on two cores drained 3 to 7 times
    slower).
    Here a waiting worker's doorbell counts the wake-ups: the large task's end, followed
    by a smaller one, frees a CPU; the last end frees everything; the eight between free
    nothing."""
    waiting = Doorbell(999999)  # in the bell folder the test's settings share with workers
    blocked_stamp = stamps._path_in(runtime_dir / "bell", NODE, "blocked")
    fd = os.open(blocked_stamp, os.O_RDWR | os.O_CREAT, 0o600)
    stamps._write(fd, time.monotonic())  # a worker of the node found nothing that fit
    os.close(fd)
    with transaction.atomic():
        queue.enqueue(TaskSpec(func_path=NOOP, cpus=2, priority=10))
        small = [queue.enqueue(TaskSpec(func_path=NOOP)) for _ in range(9)]
    waiting.read()  # the enqueues' own wake-ups (SQLite rings every local worker)

    workers.start("--batch", env=env(runtime_dir, WORKER_POLL_INTERVAL="60"))
    assert workers.wait_all(timeout=60) == [0]

    assert Task.objects.filter(pk__in=[t.pk for t in small],
                               state=TaskState.SUCCEEDED).count() == 9
    freed = [message for message in waiting.read() if message == FREED]
    waiting.close()
    assert len(freed) == 2, f"woken {len(freed)} times"


def test_a_waiting_worker_looks_again_after_enqueues_not_once_for_each(workers, runtime_dir):
    """The node's one CPU is taken: the second worker's claims find due tasks that do not
    fit. Each enqueue wakes it; it looks again at most every BLOCKED_ENQUEUE_LOOK seconds
    (and at its polls), not once per enqueue, which took the database's write lock as fast
    as tasks arrived. Its DEBUG log says each time it looked and nothing fitted."""
    go = runtime_dir / "go"
    one_cpu = env(runtime_dir, WORKER_NODE_CPUS="1", LOG_LEVEL="DEBUG")
    held = submit(HOLD_UNTIL, 10, str(go))
    workers.start(env=one_cpu)
    wait_for(lambda: Task.objects.get(pk=held.pk).state == TaskState.RUNNING, timeout=30)
    queue.enqueue(TaskSpec(func_path=NOOP))
    workers.start(env=one_cpu)
    wait_for(lambda: NONE_FITS in workers.output(1), timeout=30)

    began = time.monotonic()
    arrived = [queue.enqueue(TaskSpec(func_path=NOOP)) for _ in range(100)]  # a commit each
    took = time.monotonic() - began
    looks = workers.output(1).count(NONE_FITS)
    go.touch()

    wait_for(lambda: Task.objects.filter(pk__in=[t.pk for t in arrived],
                                         state=TaskState.SUCCEEDED).count() == 100, timeout=60)
    allowed = 1 + (took + 1.0) / BLOCKED_ENQUEUE_LOOK + (took + 1.0) / FAST["poll_interval"]
    assert looks <= allowed, f"{looks} looks while 100 tasks arrived in {took:.2f} s"


def test_a_worker_killed_with_sigkill_gives_its_share_back(workers, runtime_dir):
    go = runtime_dir / "go"
    for _ in range(2):
        workers.start(env=env(runtime_dir))
    job = submit(HOLD_UNTIL, 600, str(go))
    wait_for(lambda: Task.objects.get(pk=job.pk).state == TaskState.RUNNING, timeout=30)
    wait_for(lambda: committed(NODE)[0] == 600)
    victim = Task.objects.get(pk=job.pk).worker
    assert victim is not None and victim.pid is not None

    os.kill(victim.pid, signal.SIGKILL)

    def rerun_elsewhere() -> bool:
        row = Task.objects.get(pk=job.pk)
        return row.state == TaskState.RUNNING and row.worker_id not in (None, victim.pk)

    wait_for(rerun_elsewhere, timeout=30)
    assert committed(NODE)[0] == 600, "the killed attempt's share is gone"
    go.touch()
    wait_for(lambda: Task.objects.get(pk=job.pk).state == TaskState.SUCCEEDED, timeout=30)
    assert committed(NODE)[0] == 0
    outcomes = list(TaskAttempt.objects.filter(task=job).order_by("number")
                    .values_list("outcome", flat=True))
    assert outcomes == [Outcome.WORKER_LOST, Outcome.SUCCEEDED]


def test_a_worker_blocked_by_memory_starts_its_task_when_a_task_of_its_node_ends(
        workers, runtime_dir, tmp_path):
    """Polls are a minute apart: only the wake-up of a task's end can start the waiting
    task in time. The task that ends is in another queue, so its own worker cannot take
    the waiting one."""
    release = tmp_path / "release"
    held = queue.enqueue(TaskSpec(func_path=HOLD_UNTIL, args=[50, str(release)],
                                  memory_mb=600, queue="other", force=True))
    slow = env(runtime_dir, WORKER_POLL_INTERVAL="60")
    workers.start("--queue", "other", env=slow)
    wait_for(lambda: Task.objects.get(pk=held.pk).state == TaskState.RUNNING, timeout=30)
    waiting = submit(HOLD, 600, 0.1)
    blocked_stamp = stamps._path_in(runtime_dir / "bell", NODE, "blocked")
    workers.start(env=slow)
    wait_for(blocked_stamp.exists, timeout=30)  # it looked, and 600 MB did not fit

    release.touch()

    wait_for(lambda: Task.objects.get(pk=waiting.pk).state == TaskState.SUCCEEDED, timeout=30)
    ended, started = (Task.objects.get(pk=held.pk).finished_at,
                      Task.objects.get(pk=waiting.pk).started_at)
    assert ended is not None and started is not None
    assert (started - ended).total_seconds() < 30, "woken, not polled a minute later"

"""A kill storm: workers SIGKILLed at random while they drain 1,000 tasks.

Nothing is lost, each result is recorded once, no two executions of a task overlap. What
the storm cannot avoid, it measures: how soon a killed worker's task runs again, and how
many tasks ran more than once (at-least-once execution, exactly-once recording).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import random
import signal
import subprocess
import time
from collections import Counter
from typing import Any

import pytest
from django.db import connection, transaction

from tests.conftest import wait_for, worker_env
from tests.testapp.chaos import enqueue, overlaps
from tests.testapp.models import Span
from workers.models import Task, TaskAttempt, Worker
from workers.states import Outcome, TaskState, WorkerState

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

TASKS = 1000
POOL = 4
KILL_EVERY = 0.5  # the storm's rhythm, not a wait for a condition
TASK_SECONDS = 0.03
STORM_LIMIT = 45.0  # seconds; the storm ends sooner, when every task has succeeded
# A task in flight at three kills would be quarantined as one that takes its worker down
# (by design: a SIGKILL from outside looks the same). This test is about losing tasks, so
# neither quarantine nor running out of attempts may end one.
NEVER = "1000"


def _percentile(values: list[float], percent: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(math.ceil(percent / 100 * len(ordered)) - 1, 0)]


def _unfinished(ids: list[int]) -> int:
    return Task.objects.filter(pk__in=ids).exclude(state=TaskState.SUCCEEDED).count()


def _storm(workers: Any, env: dict[str, str], ids: list[int], rng: random.Random,
           killed: dict[int, tuple[int, float]]) -> None:
    """Kill a random RUNNING worker every KILL_EVERY s and start another; note in ``killed``
    each victim's worker id, pid and the time its process was dead and reaped."""
    deadline = time.monotonic() + STORM_LIMIT
    while _unfinished(ids) and time.monotonic() < deadline:
        time.sleep(KILL_EVERY)
        ours: dict[int, subprocess.Popen[bytes]] = {
            proc.pid: proc for proc in workers.procs if proc.poll() is None
        }
        candidates = sorted(
            (worker.pk, worker.pid)
            for worker in Worker.objects.filter(state=WorkerState.RUNNING, pid__in=ours)
            if worker.pid is not None
        )
        if not candidates:
            continue
        worker_id, pid = rng.choice(candidates)
        os.kill(pid, signal.SIGKILL)  # the worker process only, as kill -9 <pid> would
        ours[pid].wait(timeout=10)
        killed[worker_id] = (pid, time.time())
        workers.start(env=env)


def _executions(killed_at: dict[int, float]) -> list[tuple[int, float, float]]:
    """(task, start, end) of every execution; one that never ended ended when its worker
    was killed, or never, as far as anyone can tell."""
    return [
        (span.task_id, span.started,
         span.ended if span.ended is not None else killed_at.get(span.worker_id, math.inf))
        for span in Span.objects.all()
    ]


def _rerun_delays(killed_at: dict[int, float]) -> list[float]:
    """For each execution whose worker was killed: seconds from the kill to the next start."""
    by_task: dict[int, list[Span]] = {}
    for span in Span.objects.order_by("started", "id"):
        by_task.setdefault(span.task_id, []).append(span)
    delays = []
    for spans in by_task.values():
        for earlier, later in itertools.pairwise(spans):
            if earlier.worker_id in killed_at:
                delays.append(later.started - killed_at[earlier.worker_id])
    return delays


def _kill_leftovers(killed: dict[int, tuple[int, float]]) -> None:
    """Stop anything still running in a killed worker's process group."""
    for pid, _ in killed.values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


# Tasks of 30 ms count as short with this threshold: claimed together (SQLite), so the
# storm also kills workers holding tasks beside the one they run.
TOGETHER = {"WORKER_SHORT_TASK_MS": "100", "LOG_LEVEL": "DEBUG"}


@pytest.mark.parametrize("together", [False, True], ids=["one-by-one", "short-together"])
def test_a_kill_storm_loses_nothing_records_once_and_never_overlaps(workers, runtime_dir,
                                                                    record_property, capsys,
                                                                    together):
    if together and connection.vendor != "sqlite":
        pytest.skip("tasks are held together on SQLite only; PostgreSQL claims one at a time")
    seed = random.randrange(2**32)
    record_property("seed", seed)
    env = worker_env(runtime_dir, WORKER_QUARANTINE_AFTER=NEVER, **(TOGETHER if together else {}))
    with transaction.atomic():
        ids = [enqueue("short", f"storm-{i}", TASK_SECONDS, max_attempts=int(NEVER)).pk
               for i in range(TASKS)]
    for _ in range(POOL):
        workers.start(env=env)
    wait_for(lambda: Worker.objects.filter(state=WorkerState.RUNNING).count() == POOL, timeout=30)
    killed: dict[int, tuple[int, float]] = {}  # worker id -> (pid, dead and reaped at)
    try:
        _storm(workers, env, ids, random.Random(seed), killed)
        with contextlib.suppress(AssertionError):  # judged below, with the details
            wait_for(lambda: not _unfinished(ids), timeout=60, every=0.2)
    finally:
        _kill_leftovers(killed)
    killed_at = {worker_id: when for worker_id, (_, when) in killed.items()}

    spans = Counter(Span.objects.values_list("task_id", flat=True))
    completed = Counter(
        Span.objects.filter(ended__isnull=False).values_list("task_id", flat=True)
    )
    delays = _rerun_delays(killed_at)
    figures = {
        "kills": len(killed_at),
        "kill_to_rerun_p50_s": round(_percentile(delays, 50), 3) if delays else None,
        "kill_to_rerun_p99_s": round(_percentile(delays, 99), 3) if delays else None,
        "reruns_after_a_kill": len(delays),
        "tasks_started_more_than_once": sum(1 for n in spans.values() if n > 1),
        "tasks_run_to_the_end_more_than_once": sum(1 for n in completed.values() if n > 1),
    }
    for name, value in figures.items():
        record_property(name, value)
    with capsys.disabled():
        print(f"\nkill storm (seed {seed}): " + ", ".join(f"{k}={v}" for k, v in figures.items()))

    states = Counter(Task.objects.filter(pk__in=ids).values_list("state", flat=True))
    assert states == {TaskState.SUCCEEDED: TASKS}, f"lost or stuck (seed {seed}): {states}"
    assert not Task.objects.filter(state=TaskState.RUNNING).exists()
    recorded = Counter(
        TaskAttempt.objects.filter(outcome=Outcome.SUCCEEDED).values_list("task_id", flat=True)
    )
    twice = {task_id: n for task_id, n in recorded.items() if n != 1}
    assert not twice, f"results recorded more than once: {twice}"
    assert set(recorded) == set(ids)
    assert set(completed) == set(ids), "every task's function ran to its end at least once"
    assert overlaps(_executions(killed_at)) == []
    assert len(killed_at) >= 10, "the storm killed workers"
    if together:
        logs = (runtime_dir / "logs").glob("worker_*.log")
        assert any("claimed together" in log.read_text(errors="replace") for log in logs)
    assert delays, "some killed worker was running a task, which ran again"

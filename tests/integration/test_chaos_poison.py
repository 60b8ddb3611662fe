"""Poison data: nothing a task prints, raises, returns or reports takes the pool down."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import pytest
from django.db import transaction

from tests.conftest import ROOT, wait_for, worker_env
from tests.testapp.chaos import enqueue, readable
from workers.models import Task, TaskAttempt, Worker
from workers.states import FINISHED_TASK_STATES, TaskState, WorkerState

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

# What each poison task does to the database, and the word its stored error must hold.
RAISES = {
    "print_nul_and_fail": "RuntimeError",  # prints "\x00", then fails
    "raise_nul": "ValueError",  # ValueError("a\x00b")
    "raise_surrogate": "ValueError",  # ValueError("a\ud800b"): SQLite's poison
}
RETURNS = ["return_nul", "return_surrogate"]  # {"s": "a\x00b"}, "\ud800"
REPORTS = "progress_nul"  # progress message "\x00"
KILLER = "print_nul_then_kill_worker"  # prints "\x00", then SIGKILLs its worker
POISON = [*RAISES, *RETURNS, REPORTS, KILLER]


def _finished(ids: list[int]) -> bool:
    return not Task.objects.filter(pk__in=ids).exclude(state__in=FINISHED_TASK_STATES).exists()


def _enqueue_amid_ordinary(count: int) -> tuple[list[int], dict[str, int]]:
    ordinary, poison = [], {}
    pending = list(POISON)
    with transaction.atomic():
        for i in range(count):
            ordinary.append(enqueue("short", f"ordinary-{i}", 0.05).pk)
            if i % 5 == 2 and pending:
                name = pending.pop(0)
                poison[name] = enqueue(name, max_attempts=1).pk
    assert not pending
    return ordinary, poison


def _errors(task_id: int) -> list[str]:
    found = Task.objects.get(pk=task_id)
    return [found.error, *found.attempts.values_list("error", flat=True)]


def test_poison_data_never_takes_a_worker_or_the_monitor_down(workers, runtime_dir):
    ordinary, poison = _enqueue_amid_ordinary(40)
    for _ in range(4):
        workers.start()
    everything = ordinary + list(poison.values())
    with contextlib.suppress(AssertionError):  # judged below, with the details
        wait_for(lambda: _finished(everything), timeout=90, every=0.2)

    states = dict(Task.objects.filter(pk__in=everything).values_list("id", "state"))
    unfinished = {pk: state for pk, state in states.items() if state not in FINISHED_TASK_STATES}
    assert not unfinished, f"tasks never finished: {unfinished}"
    assert [pk for pk in ordinary if states[pk] != TaskState.SUCCEEDED] == []

    # Every worker but the one the killer task took down is alive and RUNNING.
    killed = TaskAttempt.objects.filter(task_id=poison[KILLER]).values_list("worker_id", flat=True)
    assert len(killed) == 1, "the killer task ran once (max_attempts=1)"
    victim = Worker.objects.get(pk=killed[0])
    survivors = {worker.pid: worker.state for worker in Worker.objects.exclude(pk=victim.pk)}
    assert survivors == dict.fromkeys(survivors, WorkerState.RUNNING)
    assert len(survivors) == 3
    alive = [proc.pid for proc in workers.procs if proc.poll() is None]
    assert sorted(alive) == sorted(pid or 0 for pid in survivors)
    wait_for(lambda: Worker.objects.get(pk=victim.pk).state == WorkerState.FAILED, timeout=15)
    victim.refresh_from_db()
    assert "\x00" not in victim.log_tail, "the victim's log tail was stored"

    for name, word in RAISES.items():
        failed = Task.objects.get(pk=poison[name])
        assert failed.state == TaskState.FAILED, name
        assert readable(failed.error) and word in failed.error, (name, failed.error)
        assert all(readable(text) for text in _errors(failed.pk)), (name, _errors(failed.pk))
    printed = TaskAttempt.objects.get(task_id=poison["print_nul_and_fail"])
    assert "before a NUL byte" in printed.log_tail and "\x00" not in printed.log_tail
    for name in RETURNS:
        ended = Task.objects.get(pk=poison[name])
        if ended.state == TaskState.SUCCEEDED:  # made storable
            assert readable(json.dumps(ended.result, ensure_ascii=False)), (name, ended.result)
        else:
            assert ended.state == TaskState.FAILED, name
            assert readable(ended.error) and "result" in ended.error.lower(), (name, ended.error)
    reported = Task.objects.get(pk=poison[REPORTS])
    assert reported.state in FINISHED_TASK_STATES
    assert "\x00" not in reported.progress_message
    if reported.state != TaskState.SUCCEEDED:
        assert readable(reported.error), reported.error
    killer = Task.objects.get(pk=poison[KILLER])
    assert killer.state == TaskState.FAILED and readable(killer.error), killer.error

    tick = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "workers", "tick"],
        cwd=ROOT, env=worker_env(runtime_dir), capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert tick.returncode == 0, tick.stderr[-2000:]

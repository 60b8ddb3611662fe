"""Drain, abort, cancel, launch tokens and PID checks, with real processes and signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.core.management import call_command

from tests.conftest import wait_for, worker_env
from tests.testapp.models import Execution
from workers import queue
from workers.exceptions import LaunchFailed
from workers.models import Task, Worker
from workers.pool import launcher, lifecycle, monitor, processes
from workers.states import Outcome, TaskState, WorkerState

from .helpers import enqueue, running_workers, task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def worker(pk: int) -> Worker:
    return Worker.objects.get(pk=pk)


def test_sigterm_drains_the_current_task_then_ends_dead(workers):
    job = enqueue("sleep_then_record", "drained", 2.0)
    later = enqueue("record", "never", priority=-1)
    proc = workers.start()
    wait_for(lambda: Execution.objects.filter(key="drained:start").exists())
    proc.send_signal(signal.SIGTERM)

    # The panel shows the drain while the last task finishes, not RUNNING.
    wait_for(lambda: Worker.objects.get().state == WorkerState.DRAINING, timeout=5)
    assert not Execution.objects.filter(key="drained").exists(), "still running its task"
    assert proc.wait(timeout=10) == 0
    assert task(job.pk).state == TaskState.SUCCEEDED
    assert task(later.pk).state == TaskState.QUEUED, "nothing more was claimed"
    ended = Worker.objects.get()
    assert ended.state == WorkerState.DEAD
    assert "SIGTERM" in ended.failure_reason


def test_a_second_sigterm_aborts_the_task_and_requeues_it(workers):
    job = enqueue("sleep_then_record", "twice", 30)
    proc = workers.start()
    wait_for(lambda: Execution.objects.filter(key="twice:start").exists())
    proc.send_signal(signal.SIGTERM)
    wait_for(lambda: Worker.objects.get().state == WorkerState.DRAINING)
    proc.send_signal(signal.SIGTERM)

    assert proc.wait(timeout=5) == 128 + signal.SIGTERM, "aborted: not the exit of a drain"
    assert Worker.objects.get().exit_code == 128 + signal.SIGTERM
    requeued = task(job.pk)
    assert requeued.state == TaskState.QUEUED
    assert requeued.attempts.get().outcome == Outcome.ABORTED


def test_drain_from_the_operator_prefers_an_idle_worker(workers):
    busy_job = enqueue("sleep_then_record", "busy", 4)
    workers.start()
    wait_for(lambda: Execution.objects.filter(key="busy:start").exists())
    workers.start()
    wait_for(lambda: len(running_workers()) == 2)
    busy = task(busy_job.pk).worker_id
    assert busy is not None
    assert task(busy_job.pk).state == TaskState.RUNNING

    drained = launcher.drain()
    assert drained.pk != busy
    wait_for(lambda: worker(drained.pk).state == WorkerState.DEAD, timeout=5)
    assert worker(drained.pk).failure_reason == "drained by operator"
    assert worker(busy).state == WorkerState.RUNNING


def _running_sleeper(workers: Any, runtime_dir: Path) -> tuple[Task, int]:
    """A worker running a task that started a grandchild process; the task and that pid."""
    pid_file = runtime_dir / "grandchild.pid"
    job = enqueue("spawn_sleeper", str(pid_file), 60)
    workers.start()
    wait_for(pid_file.exists)
    return job, int(pid_file.read_text())


def test_abort_stops_the_task_and_its_children_and_requeues_it(workers, runtime_dir):
    job, grandchild = _running_sleeper(workers, runtime_dir)
    target = task(job.pk).worker_id
    assert target is not None

    launcher.abort(target)
    wait_for(lambda: worker(target).state == WorkerState.DEAD, timeout=10)
    assert worker(target).failure_reason == "aborted by operator"
    wait_for(lambda: not psutil.pid_exists(grandchild), timeout=5)
    requeued = task(job.pk)
    assert requeued.state == TaskState.QUEUED
    assert requeued.attempts.get().outcome == Outcome.ABORTED


def test_cancel_stops_a_running_task_within_a_second(workers, runtime_dir):
    job, grandchild = _running_sleeper(workers, runtime_dir)

    asked = time.monotonic()
    queue.cancel(job.pk)
    wait_for(lambda: task(job.pk).state == TaskState.CANCELLED, timeout=1.0)
    assert time.monotonic() - asked < 1.0
    assert task(job.pk).attempts.get().outcome == Outcome.CANCELLED
    wait_for(lambda: not psutil.pid_exists(grandchild), timeout=1.0)
    assert len(running_workers()) == 1, "the worker goes on"


def test_cancel_of_a_queued_task_is_immediate(crucible):
    job = enqueue("record", "never")
    assert queue.cancel(job.pk).state == TaskState.CANCELLED
    assert queue.retry(job.pk).state == TaskState.QUEUED


def test_spawned_worker_proves_its_token_and_keeps_it_off_the_command_line(
    workers, runtime_dir, monkeypatch
):
    for name, value in worker_env(runtime_dir).items():
        monkeypatch.setenv(name, value)  # what the web server's environment would hold
    started = launcher.add(1)[0]
    wait_for(lambda: worker(started.pk).state == WorkerState.RUNNING, timeout=10)
    running = worker(started.pk)
    assert running.pid is not None
    proc = psutil.Process(running.pid)
    assert "runworker" in " ".join(proc.cmdline())
    assert all("TOKEN" not in part for part in proc.cmdline())
    assert running.launch_token_hash == "", "the token is single-use"
    assert os.getpgid(running.pid) == running.pid, "it leads its own process group"
    assert proc.ppid() != os.getpid(), "re-parented: the spawner has no zombie to reap"

    launcher.abort(started.pk)
    wait_for(lambda: worker(started.pk).state == WorkerState.DEAD, timeout=5)
    wait_for(lambda: not psutil.pid_exists(proc.pid), timeout=5)


def test_add_refuses_beyond_max_count_without_force(crucible, settings):
    import dataclasses

    settings.CRUCIBLE = dataclasses.replace(settings.CRUCIBLE, max_count=1)
    Worker.objects.create(node=crucible.node_address, state=WorkerState.RUNNING)
    with pytest.raises(Exception, match="WORKER_MAX_COUNT allows 1"):
        call_command("workers", "add")
    assert Worker.objects.count() == 1


def test_a_wrong_launch_token_is_refused_and_the_row_failed(workers, runtime_dir):
    _, token_hash = lifecycle.new_token()
    row = Worker.objects.create(node="here", spawned=True, launch_token_hash=token_hash)
    env = worker_env(runtime_dir, WORKER_LAUNCH_TOKEN="not-the-token")
    proc = workers.start("--worker-id", str(row.pk), env=env)

    assert proc.wait(timeout=15) != 0
    assert "launch token rejected" in workers.output(0)
    failed = worker(row.pk)
    assert failed.state == WorkerState.FAILED
    assert "Launch token rejected" in failed.failure_reason


def test_abort_never_signals_a_pid_that_now_belongs_to_another_process(crucible):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        created = processes.create_time(bystander.pid)
        stale = Worker.objects.create(
            node=crucible.node_address, state=WorkerState.RUNNING, pid=bystander.pid,
            process_started_at=created - 100.0,
        )
        assert launcher.kill(stale) is False
        launcher.abort(stale.pk)
        Worker.objects.filter(pk=stale.pk).update(
            abort_requested_at=stale.created_at.replace(year=2000)
        )
        report = monitor.tick()
        assert stale.pk in report.killed or stale.pk in report.gone
        assert bystander.poll() is None, "the bystander was not signalled"
        assert worker(stale.pk).state == WorkerState.FAILED
    finally:
        bystander.kill()
        bystander.wait()


def test_a_worker_stuck_in_starting_fails_after_the_startup_timeout(crucible, settings):
    import dataclasses

    settings.CRUCIBLE = dataclasses.replace(settings.CRUCIBLE, startup_timeout=0.01)
    stuck = Worker.objects.create(node=crucible.node_address, state=WorkerState.STARTING)
    time.sleep(0.05)
    assert monitor.tick().timed_out == [stuck.pk]
    assert "WORKER_STARTUP_TIMEOUT" in worker(stuck.pk).failure_reason


def test_worker_logs_to_its_own_file_and_keeps_the_tail_of_a_failure(workers, crucible):
    job = enqueue("fail_always", "visible in the log", max_attempts=1)
    workers.start("--batch")
    assert workers.wait_all() == [0]
    row = Worker.objects.get()
    log = Path(crucible.log_dir) / f"worker_{row.pk}.log"
    assert "ValueError: visible in the log" in log.read_text()
    attempt = task(job.pk).attempts.get()
    assert "visible in the log" in attempt.log_tail or "visible in the log" in attempt.error
    assert Task.objects.get(pk=job.pk).state == TaskState.FAILED


def test_a_worker_the_os_will_not_start_is_failed_with_the_reason(crucible, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")  # e.g. out of process slots

    monkeypatch.setattr("workers.pool.launcher.subprocess.run", refuse)
    with pytest.raises(LaunchFailed, match="Resource temporarily unavailable"):
        launcher.add(1)
    failed = Worker.objects.get()
    assert failed.state == WorkerState.FAILED
    assert "Could not start" in failed.failure_reason

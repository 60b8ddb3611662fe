"""A task's memory is its own, limited, retried with more, and learned: real workers, real
allocations (every page written), and the pages an operator reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import wait_for, worker_env
from tests.testapp.models import Execution
from workers import queue
from workers.models import Node, Task, TaskAttempt, Worker
from workers.pool import estimates, learning
from workers.runtime import memory
from workers.spec import TaskSpec
from workers.states import Outcome, TaskState

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

MB = 1024 * 1024
TASKS = "tests.testapp.memory_tasks"


def submit(name: str, *args: Any, **fields: Any) -> Task:
    return queue.enqueue(TaskSpec(func_path=f"{TASKS}.{name}", args=list(args), **fields))


def reload(task: Task) -> Task:
    return Task.objects.get(pk=task.pk)


def tree_rss(pid: int) -> int:
    root = psutil.Process(pid)
    return sum(proc.memory_info().rss for proc in [root, *root.children(recursive=True)])


def crossed_at(steps: Path, limit: int) -> float:
    """When the task's size passed ``limit``: its first step past it, or (stopped before it
    could write that step) its last step written, which is earlier still."""
    fields = [line.split() for line in steps.read_text().splitlines()]
    moments = [(float(f[0]), int(f[1])) for f in fields if len(f) == 2]  # not a cut last line
    past = [at for at, rss in moments if rss > limit]
    return past[0] if past else moments[-1][0]


def page(client: Any, task: Task) -> str:
    response = client.get(f"/admin/workers/task/{task.pk}/change/")
    assert response.status_code == 200
    return str(response.content.decode())


def test_a_leak_stays_with_its_task_and_its_executor_is_replaced(workers, admin_client):
    proc = workers.start()
    leaky = submit("leak", 800)
    wait_for(lambda: reload(leaky).state == TaskState.SUCCEEDED, timeout=120)
    # The executor kept 800 MB in a module global: replaced before the next claim, so the
    # worker's processes give it back while idle.
    wait_for(lambda: tree_rss(proc.pid) < 400 * MB, timeout=30)

    after = submit("small")
    wait_for(lambda: reload(after).state == TaskState.SUCCEEDED, timeout=60)
    leaked, small = reload(leaky), reload(after)
    assert leaked.peak_rss_bytes is not None and leaked.peak_rss_bytes > 800 * MB
    assert small.peak_rss_bytes is not None and small.peak_rss_bytes < 300 * MB, (
        "the next task's peak is its own, not the leak's")
    pids = dict(Execution.objects.values_list("key", "pid"))
    assert pids["leak"] != pids["small"], "the small task ran in a new executor"
    assert tree_rss(proc.pid) < 400 * MB


def test_the_peaks_of_tasks_in_one_executor_are_each_their_own(workers):
    workers.start()
    first_small = submit("small")
    wait_for(lambda: reload(first_small).state == TaskState.SUCCEEDED, timeout=60)
    spike = submit("hold", 300)  # gives its memory back on return: the executor is kept
    wait_for(lambda: reload(spike).state == TaskState.SUCCEEDED, timeout=60)
    after = submit("small")
    wait_for(lambda: reload(after).state == TaskState.SUCCEEDED, timeout=60)
    pids = dict(Execution.objects.values_list("key", "pid"))
    assert pids["hold 300"] == pids["small"], "one executor ran both"
    peaks = [reload(task).peak_rss_bytes or 0 for task in (first_small, spike, after)]
    assert peaks[1] > 300 * MB
    assert peaks[2] < peaks[1] - 250 * MB, f"the spike's peak stayed with the next task: {peaks}"
    assert abs(peaks[2] - peaks[0]) < 50 * MB, f"small tasks' peaks differ: {peaks}"


def test_a_task_past_its_limit_is_stopped_within_a_second_and_the_worker_serves_on(
        workers: Any, runtime_dir: Path, admin_client: Any) -> None:
    oom_before = memory.oom_kills()
    steps = runtime_dir / "steps"
    grower = submit("grow", 20, str(steps), memory_limit_mb=300, max_attempts=1)
    after = submit("small")
    proc = workers.start()

    wait_for(lambda: reload(grower).state == TaskState.FAILED, timeout=120)
    attempt = TaskAttempt.objects.get(task_id=grower.pk)
    assert attempt.outcome == Outcome.MEMORY_LIMIT
    assert "memory limit exceeded" in attempt.error
    assert attempt.memory_limit_mb == 300
    assert attempt.peak_rss_bytes is not None and attempt.peak_rss_bytes > 300 * MB
    stopped_after = attempt.finished_at.timestamp() - crossed_at(steps, 300 * MB)
    assert 0 <= stopped_after < 1.0, f"stopped {stopped_after:.2f} s after passing its limit"

    wait_for(lambda: reload(after).state == TaskState.SUCCEEDED, timeout=60)
    assert reload(after).worker_id == attempt.worker_id, "the same worker served on"
    assert proc.poll() is None
    assert memory.oom_kills() == oom_before, "the kernel's OOM killer ended nothing"

    shown = page(admin_client, grower)
    assert "Memory limit exceeded" in shown
    assert "limit 300 MB" in shown


def test_a_task_stopped_for_memory_is_retried_with_a_raised_limit(workers, runtime_dir,
                                                                  admin_client):
    # 300 MB and the executor's own size: past 250 MB, well within 250 x 2.
    held = submit("hold", 300, 2.0, memory_mb=240, memory_limit_mb=250, max_attempts=3)
    workers.start("--batch", env=worker_env(runtime_dir, WORKER_MEMORY_RETRY_FACTOR="2"))
    assert workers.wait_all(timeout=120) == [0]

    attempts = list(TaskAttempt.objects.filter(task_id=held.pk).order_by("number"))
    assert [a.outcome for a in attempts] == [Outcome.MEMORY_LIMIT, Outcome.SUCCEEDED]
    assert [a.memory_limit_mb for a in attempts] == [250, 500]
    assert [a.memory_estimate_mb for a in attempts] == [240, 480]
    done = reload(held)
    assert (done.state, done.result, done.memory_limit_mb) == (TaskState.SUCCEEDED, 300, 500)

    shown = page(admin_client, held)
    assert "limit 250 MB" in shown and "limit 500 MB" in shown


def test_learned_estimates_converge_to_measured_peaks(workers, admin_client):
    func = f"{TASKS}.hold"
    assert estimates.estimate(func, {}, None).source == estimates.DEFAULT
    runs = [submit("hold", 200) for _ in range(3)]
    workers.start()  # its monitor tick folds the finished attempts into the estimate
    wait_for(lambda: all(reload(t).state == TaskState.SUCCEEDED for t in runs), timeout=120)

    def learned() -> estimates.Estimate | None:
        found = estimates.estimate(func, {}, None)
        return found if found.source == estimates.LEARNED else None

    guess = wait_for(learned, timeout=60)
    assert guess.runs == 3
    peak = max(reload(t).peak_rss_bytes or 0 for t in runs) / MB
    assert peak <= guess.mb <= peak * 1.2, (guess.mb, peak)

    follower = submit("hold", 200, 10.0)
    shown = page(admin_client, follower)
    assert f"{guess.mb} MB" in shown and "learned from 3 runs" in shown
    # While it runs, the panel shows its processes' memory against the estimate.
    wait_for(lambda: (Worker.objects.filter(task_rss_bytes__gt=200 * MB).exists()), timeout=60)
    panel = admin_client.get("/admin/worker-status/").content.decode()
    assert f"of {guess.mb} MB" in panel and "learned from 3 runs" in panel


def test_learned_per_unit_of_the_size_a_task_names(workers):
    func = f"{TASKS}.hold_units"
    learning.scale_by(func, lambda kwargs: float(kwargs["units"]))
    runs = [submit("hold_units", kwargs={"units": units}) for units in (100, 200, 300)]
    assert [reload(t).memory_scale for t in runs] == [100.0, 200.0, 300.0]
    workers.start()
    wait_for(lambda: all(reload(t).state == TaskState.SUCCEEDED for t in runs), timeout=120)

    def learned() -> estimates.Estimate | None:
        found = estimates.estimate(func, {"units": 500}, None)
        return found if found.source == estimates.LEARNED else None

    guess = wait_for(learned, timeout=60)
    bigger = submit("hold_units", kwargs={"units": 500})
    assert reload(bigger).memory_estimate_mb == guess.mb
    wait_for(lambda: reload(bigger).state == TaskState.SUCCEEDED, timeout=60)
    peak = (reload(bigger).peak_rss_bytes or 0) / MB
    slack = (guess.mb - peak) / guess.mb
    assert 0 <= slack < 0.23, f"estimate {guess.mb} MB, peak {peak:.0f} MB"


def test_an_oom_killed_attempt_is_retried_with_more_within_the_largest_budget(settings):
    Node.objects.create(name="big", memory_mb=1000, cpus=2)
    Node.objects.create(name="small", memory_mb=400, cpus=2)
    oomed = submit("hold", 10, memory_mb=800, memory_limit_mb=900)
    worker = Worker.objects.create(node="big")
    token = queue.claim_next(worker.pk, ["default"])
    assert token is not None and token.id == oomed.pk

    killed = queue.Ending(Outcome.OOM_KILLED, "Killed by the kernel's OOM killer")
    assert queue.fail(token, killed) == TaskState.QUEUED
    again = reload(oomed)
    assert (again.memory_estimate_mb, again.memory_limit_mb) == (1000, 1000), (
        "x 1.5, capped by the largest node budget")
    attempt = TaskAttempt.objects.get(task_id=oomed.pk)
    assert (attempt.outcome, attempt.memory_estimate_mb, attempt.memory_limit_mb) == (
        Outcome.OOM_KILLED, 800, 900)


def test_an_error_is_retried_with_the_same_memory(settings):
    failed = submit("hold", 10, memory_mb=300)
    worker = Worker.objects.create(node="a")
    token = queue.claim_next(worker.pk, ["default"])
    assert token is not None
    queue.fail(token, queue.Ending(Outcome.ERROR, "ValueError: no"))
    assert reload(failed).memory_estimate_mb == 300

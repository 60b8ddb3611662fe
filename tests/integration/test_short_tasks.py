"""Short tasks claimed together (SQLite): each still fenced, counted once it begins, and
never held behind a task that runs long; a lost worker's held tasks go back uncounted and
run alone from then on (``workers.queue.holding``, ``workers.runtime.bundle``)."""

from __future__ import annotations

import dataclasses
import functools
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction

from tests.conftest import wait_for, worker_env
from tests.testapp.models import Execution
from workers import queue
from workers.models import Node, Task, TaskAttempt, Worker
from workers.pool import budget
from workers.queue.doorbell import Doorbell
from workers.queue.holding import Holding, held_ids
from workers.queue.hotpath import ClaimedTask
from workers.runtime.supervisor import Lease, Options, Running, Supervisor
from workers.states import Outcome, TaskState

from .helpers import TASKS, enqueue, running_workers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]
STEP = f"{TASKS}.step"
TOGETHER = f"short tasks of {STEP} claimed together"


@pytest.fixture(autouse=True)
def _sqlite_only() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("tasks are held together on SQLite only; PostgreSQL claims one at a time")


def _env(runtime_dir: Path, **extra: str) -> dict[str, str]:
    """Every step counts as short here (a task writes a row, which a busy machine can make
    slower than the default 5 ms), held by eights."""
    return worker_env(runtime_dir, **{"LOG_LEVEL": "DEBUG", "WORKER_SHORT_TASK_MS": "1000",
                                      "WORKER_SHORT_TASKS_PER_CLAIM": "8", **extra})


def _steps(count: int, acts: dict[int, str] | None = None, **fields: Any) -> list[int]:
    acts = acts or {}
    with transaction.atomic():
        return [enqueue("step", f"s{i}", acts.get(i, ""), **fields).pk for i in range(count)]


def _all_succeeded(ids: list[int]) -> bool:
    return Task.objects.filter(pk__in=ids, state=TaskState.SUCCEEDED).count() == len(ids)


def _executions(key: str) -> int:
    return Execution.objects.filter(key=key).count()


def _logged(runtime_dir: Path, text: str) -> bool:
    return any(text in log.read_text(errors="replace")
               for log in (runtime_dir / "logs").glob("worker_*.log"))


def _counted_once(task_id: int) -> None:
    task = Task.objects.get(pk=task_id)
    attempts = list(task.attempts.values_list("number", "outcome", "started_at", "finished_at"))
    assert task.attempt == 1 and len(attempts) == 1, (task_id, attempts)
    number, outcome, started, finished = attempts[0]
    assert (number, outcome) == (1, TaskState.SUCCEEDED)
    assert started is not None and finished is not None and started <= finished
    assert task.started_at is not None and not task.held


def _next_after_first(more: int = 7) -> list[ClaimedTask]:
    """Claim the first task, then record it and claim the next, holding up to ``more``."""
    worker = Worker.objects.create(node="a")
    first = queue.claim_next(worker.pk, ["default"])
    assert first is not None
    done = [(first, "ok", queue.Ending(Outcome.SUCCEEDED))]
    return queue.succeed_all_and_claim(done, ["default"], Holding(frozenset({STEP}), more))


def test_a_claim_holds_the_tasks_behind_its_own_without_counting_their_share(crucible):
    Node.objects.create(name=budget.local_node(), memory_mb=12288, cpus=8)
    ids = _steps(20)
    claimed = _next_after_first()

    assert [token.id for token in claimed] == ids[1:9]
    assert [token.held for token in claimed] == [False] + [True] * 7
    rows = {task.pk: task for task in Task.objects.filter(pk__in=ids[1:9])}
    assert {(task.state, task.attempt) for task in rows.values()} == {(TaskState.RUNNING, 1)}
    assert rows[ids[1]].node_id is not None and not rows[ids[1]].held
    assert all(rows[pk].held and rows[pk].node_id is None for pk in ids[2:9])
    assert Task.objects.filter(pk__in=ids[9:], state=TaskState.QUEUED).count() == 11


def test_a_claim_holds_no_more_than_wait_behind(crucible):
    ids = _steps(6)  # the first, the one claimed next, and four behind it
    assert [token.id for token in _next_after_first()] == ids[1:4]


@pytest.mark.parametrize("change", [
    {"func_path": f"{TASKS}.noop"}, {"run_alone": True}, {"has_dependents": True},
    {"max_attempts": 1}, {"memory_estimate_mb": 4096}, {"cpus": 2},
])
def test_a_claim_holds_nothing_from_a_task_that_may_not_be_held(crucible, change):
    ids = _steps(20)
    Task.objects.filter(pk=ids[4]).update(**change)
    assert [token.id for token in _next_after_first()] == ids[1:4]


def test_a_claim_holds_nothing_without_a_short_function(crucible):
    _steps(20)
    assert len(_next_after_first(more=0)) == 1


def test_what_is_held_leaves_as_many_behind():
    rows = [(1, True), (2, True), (3, True), (4, True)]
    assert held_ids(rows) == [1, 2]
    assert held_ids([(1, True), (2, False), (3, True), (4, True)]) == [1]
    assert held_ids([(1, True)]) == []
    assert held_ids([]) == []


def test_short_tasks_are_claimed_together_and_each_recorded_once(workers, runtime_dir):
    ids = _steps(40)
    workers.start(env=_env(runtime_dir))
    wait_for(functools.partial(_all_succeeded, ids), timeout=60)

    assert _logged(runtime_dir, TOGETHER)
    for index, task_id in enumerate(ids):
        _counted_once(task_id)
        assert _executions(f"s{index}") == 1
        assert Task.objects.get(pk=task_id).result == f"s{index}"


def test_a_task_that_runs_long_sends_the_tasks_held_behind_it_back(workers, runtime_dir):
    """The tasks held behind a long one are queued again, uncounted, and a second worker
    runs them while it still runs; the long one holds its share of the node meanwhile."""
    release = runtime_dir / "release"
    ids = _steps(30, {10: f"wait:{release}"})
    long_one, behind = ids[10], ids[11:]
    workers.start(env=_env(runtime_dir))
    wait_for(lambda: _executions("s10") == 1, timeout=60)
    wait_for(lambda: _logged(runtime_dir, "queued again, never begun"), timeout=30)
    workers.start(env=_env(runtime_dir))

    wait_for(functools.partial(_all_succeeded, behind), timeout=60)
    running = Task.objects.get(pk=long_one)
    assert (running.state, running.held) == (TaskState.RUNNING, False)
    assert running.node_id is not None, "it holds its share of the node while it runs long"
    release.touch()
    wait_for(functools.partial(_all_succeeded, ids), timeout=30)

    assert _logged(runtime_dir, TOGETHER)
    for index, task_id in enumerate(ids):
        _counted_once(task_id)
        assert _executions(f"s{index}") == 1


def test_a_crash_counts_the_task_that_ran_and_none_held_behind_it(workers, runtime_dir):
    ids = _steps(24, {10: "crash"})
    Task.objects.filter(pk=ids[10]).update(max_attempts=1)
    workers.start(env=_env(runtime_dir))
    others = ids[:10] + ids[11:]
    wait_for(functools.partial(_all_succeeded, others), timeout=60)
    wait_for(lambda: Task.objects.get(pk=ids[10]).state == TaskState.FAILED, timeout=30)

    crashed = list(TaskAttempt.objects.filter(task_id=ids[10]).values_list("outcome", flat=True))
    assert crashed == ["CRASHED"]
    assert _logged(runtime_dir, TOGETHER)
    for task_id in others:
        _counted_once(task_id)


def test_a_lost_worker_s_held_tasks_go_back_uncounted_and_run_alone(workers, runtime_dir):
    """A task that kills its worker while held: nobody can tell that it began, so it goes
    back uncounted, but it is never held again; run alone, each time it kills a worker it
    is counted, and it fails after its attempts. Every other task succeeds."""
    ids = _steps(24, {10: "kill-worker"})
    killer = ids[10]
    Task.objects.filter(pk=killer).update(max_attempts=2)
    env = _env(runtime_dir)
    first = workers.start(env=env)
    first.wait(timeout=60)  # taken down by the killer, held in its second bundle
    assert _logged(runtime_dir, TOGETHER)

    def settled() -> bool:  # a new worker whenever the killer took one down
        if not running_workers() or all(proc.poll() is not None for proc in workers.procs):
            workers.start(env=env)
        return Task.objects.get(pk=killer).state == TaskState.FAILED and _all_succeeded(
            ids[:10] + ids[11:])

    wait_for(settled, timeout=120, every=0.5)
    lost = Task.objects.get(pk=killer)
    assert lost.run_alone and lost.attempt == 2
    outcomes = list(lost.attempts.order_by("number").values_list("number", "outcome"))
    assert outcomes == [(1, "WORKER_LOST"), (2, "WORKER_LOST")], outcomes
    assert _executions("s10") == 3, "once held (not counted), then twice alone"
    released = Task.objects.filter(pk__in=ids[11:], run_alone=True)
    assert released.exists(), "the tasks held beside it went back, never to be held again"
    assert all(task.attempt == 1 for task in released)


def test_a_worker_told_to_stop_sends_back_what_it_held(workers, runtime_dir):
    """A drain mid-bundle: the task running finishes, the tasks held behind it never begin
    and go back uncounted for another worker."""
    release = runtime_dir / "release"
    ids = _steps(30, {10: f"wait:{release}"})
    worker = workers.start(env=_env(runtime_dir, WORKER_SHORT_TASK_MS="10000"))
    wait_for(lambda: _executions("s10") == 1, timeout=60)
    held = list(Task.objects.filter(pk__in=ids[11:], state=TaskState.RUNNING, held=True))
    assert held, "tasks were held behind the one running"
    worker.terminate()  # SIGTERM: finish the task running, then stop
    wait_for(lambda: _logged(runtime_dir, "queued again, never begun"), timeout=30)
    release.touch()
    assert worker.wait(timeout=30) == 0

    for task in held:
        task.refresh_from_db()
        assert (task.state, task.attempt, task.worker_id) == (TaskState.QUEUED, 0, None)
    assert Task.objects.get(pk=ids[10]).state == TaskState.SUCCEEDED
    workers.start(env=_env(runtime_dir))
    wait_for(functools.partial(_all_succeeded, ids), timeout=60)
    for index, task_id in enumerate(ids):
        _counted_once(task_id)
        assert _executions(f"s{index}") == 1


def _supervisor(settings: Any, **changes: Any) -> Supervisor:
    conf = dataclasses.replace(settings.CRUCIBLE, **changes)
    supervisor = Supervisor(worker_id=1, options=Options(queues=["default"]), settings=conf)
    supervisor.short = {STEP}
    return supervisor


def test_a_worker_holds_nothing_while_another_of_its_machine_waits_idle(crucible, settings):
    supervisor = _supervisor(settings)
    assert supervisor._holding() == Holding(frozenset({STEP}), 15)
    other = Doorbell(2)
    other.idle(["default"])
    try:
        assert supervisor._holding() is None, "an idle worker could start them"
    finally:
        other.close()
    assert supervisor._holding() is not None
    assert _supervisor(settings, short_tasks_per_claim=1)._holding() is None


def test_a_function_that_prints_or_runs_long_is_not_held(crucible, settings):
    supervisor = _supervisor(settings)
    token = dataclasses.replace(_token(), func_path=STEP)
    running = Running(token=token, deadline=0.0, lease=Lease(0.0, 120.0, 12.0, 40.0))
    supervisor._learn(running, {"seconds": 0.001})
    assert supervisor.short == {STEP}
    running.tail = "printed\n"
    supervisor._learn(running, {"seconds": 0.001})
    assert supervisor.short == set()
    running.tail = ""
    supervisor._learn(running, {"seconds": 0.001})
    supervisor._learn(running, {"seconds": 0.006})  # over WORKER_SHORT_TASK_MS (5)
    assert supervisor.short == set()


def _token() -> ClaimedTask:
    return ClaimedTask(id=1, attempt=1, worker_id=1, func_path="m.f", args=[], kwargs={},
                       timeout=60.0, max_attempts=3, memory_mb=None,
                       started_at=datetime(2026, 1, 1, tzinfo=UTC))

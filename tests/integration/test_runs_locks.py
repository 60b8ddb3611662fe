"""Lock keys: overlapping keys never run together; a run's keys are refused or waited for;
a holder releases its keys however it ends, a SIGKILLed worker's task included."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import wait_for
from tests.testapp.models import Execution
from workers import runs
from workers.models import LockKey, Run, Task
from workers.models.run import RunState
from workers.runs.locks import overlaps
from workers.states import TaskState

from .helpers import TASKS, task
from .test_runs import by_name, finished, span

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def entry(name: str, func: str, *args: Any, **fields: Any) -> dict[str, Any]:
    return {"name": name, "task": f"{TASKS}.{func}", "args": list(args), **fields}


def started(key: str) -> bool:
    return Execution.objects.filter(key=f"{key}:start").exists()


@pytest.mark.parametrize(("one", "other", "expected"), [
    ("/data/out", "/data/out", True),
    ("/data/out", "/data/out/part-1", True),
    ("/data/out/", "/data/out", True),
    ("/data/out", "/data/output", False),
    ("licence:abaqus", "licence:abaqus", True),
    ("licence:abaqus", "licence:abaqus2", False),
])
def test_keys_overlap_when_equal_or_one_path_lies_inside_the_other(one, other, expected):
    assert overlaps(one, other) is expected and overlaps(other, one) is expected


def test_tasks_with_overlapping_keys_never_overlap_while_a_third_runs_alongside(
        workers, runtime_dir):
    first_may_end, free_may_end = runtime_dir / "s1", runtime_dir / "f"
    run = runs.submit({"name": "locked", "tasks": [
        entry("S1", "wait_for_file", str(first_may_end), "S1", locks=["/data/out"]),
        entry("S2", "sleep_then_record", "S2", 0.3, locks=["/data/out/part-2"]),
        entry("F", "wait_for_file", str(free_may_end), "F"),
    ]})
    workers.start()
    workers.start()
    wait_for(lambda: started("S1") and started("F"), timeout=30)

    tasks = by_name(run)
    assert tasks["S2"].state == TaskState.WAITING, "its key overlaps one S1 holds"
    waits = runs.report(run.pk).tasks[1]
    assert waits.name == "S2"
    holder = f"task {tasks['S1'].pk} ('S1' of run {run.pk})"
    assert waits.waiting_for == f"/data/out/part-2 held by {holder}"

    first_may_end.touch()
    wait_for(lambda: Execution.objects.filter(key="S2").exists(), timeout=30)
    free_may_end.touch()
    assert finished(run.pk).state == RunState.COMPLETED
    s1, s2, free = span("S1"), span("S2"), span("F")
    assert s1[1] <= s2[0], "S2 started only after S1 ended"
    assert free[0] < s1[1] and s1[0] < free[1], "F ran alongside S1"
    assert not LockKey.objects.filter(held=True).exists()


def test_a_killed_workers_lock_is_released_to_the_task_waiting_for_it(workers):
    holder = runs.submit({"name": "holder", "failure_policy": "continue", "tasks": [
        entry("K", "kill_my_worker", locks=["licence:solver"], max_attempts=1)]})
    waiter = runs.submit({"name": "waiter", "tasks": [
        entry("W", "record", "W", locks=["licence:solver"])]})
    assert by_name(waiter)["W"].state == TaskState.WAITING
    workers.start()
    workers.start()

    assert finished(waiter.pk, timeout=90).state == RunState.COMPLETED
    killed = by_name(holder)["K"]
    assert killed.state == TaskState.FAILED, killed.error
    assert Execution.objects.filter(key="kill").count() == 1
    assert Execution.objects.filter(key="W").exists()
    assert not LockKey.objects.filter(held=True).exists()


def test_a_runs_own_keys_held_by_another_run_are_refused_naming_it(crucible):
    holding = runs.submit({"name": "holding", "locks": ["/data"],
                           "tasks": [entry("A", "noop")]})
    with pytest.raises(runs.LockHeld, match=f"lock '/data/x' is held by run {holding.pk}"):
        runs.submit({"name": "refused", "locks": ["/data/x"], "tasks": [entry("A", "noop")]})
    assert list(Run.objects.values_list("name", flat=True)) == ["holding"], "nothing written"


def test_a_run_may_wait_for_its_keys_and_starts_once_the_holder_ended(crucible):
    holding = runs.submit({"name": "holding", "locks": ["/data"],
                           "tasks": [entry("A", "noop")]})
    waiting = runs.submit({"name": "waiting", "locks": ["/data/x"], "wait_for_locks": True,
                           "tasks": [entry("B", "noop")]})
    assert Run.objects.get(pk=waiting.pk).state == RunState.CREATED
    assert runs.report(waiting.pk).waiting_for == f"/data/x held by run {holding.pk}"
    with pytest.raises(runs.RunConflict, match="waits for its lock keys"):
        runs.resume(waiting.pk)

    Task.objects.filter(run=holding).update(state=TaskState.SUCCEEDED)
    runs.sweep()  # the tick ends the holder, whose keys go to the waiting run

    assert Run.objects.get(pk=holding.pk).state == RunState.COMPLETED
    assert Run.objects.get(pk=waiting.pk).state == RunState.RUNNING
    assert task(by_name(waiting)["B"].pk).state == TaskState.QUEUED
    assert list(LockKey.objects.filter(held=True).values_list("key", flat=True)) == ["/data/x"]


def test_cancelling_a_run_releases_its_tasks_keys_to_another_run(crucible):
    first = runs.submit({"name": "first", "tasks": [entry("A", "noop", locks=["db"])]})
    second = runs.submit({"name": "second", "tasks": [entry("B", "noop", locks=["db"])]})
    assert by_name(second)["B"].state == TaskState.WAITING

    runs.cancel(first.pk)
    assert task(by_name(second)["B"].pk).state == TaskState.QUEUED

"""Runs of dependent tasks on real workers: order, failure policy, pause, caps.

Each task body records when it started and ended (``Execution`` rows, one host clock), so
the tests read the order and any overlap from what really ran.
"""

from __future__ import annotations

import io
import itertools
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.conftest import wait_for
from tests.testapp.models import Execution
from workers import queue, runs
from workers.models import LockKey, Run, Task, Worker
from workers.models.run import RunState
from workers.queue import Ending
from workers.runs.gate import SKIPPED
from workers.states import Outcome, TaskState, WorkerState

from .helpers import TASKS, enqueue, task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

SLOW = 1.5  # seconds a "slow" task sleeps: long enough for two to overlap on 2 workers


def entry(name: str, func: str, *args: Any, after: list[str] | None = None,
          **fields: Any) -> dict[str, Any]:
    return {"name": name, "task": f"{TASKS}.{func}", "args": list(args),
            "depends_on": after or [], **fields}


def diamond(b: dict[str, Any] | None = None, c: dict[str, Any] | None = None,
            **run: Any) -> dict[str, Any]:
    """A -> B, A -> C, B + C -> D; B and C sleep so that they overlap on two workers."""
    return {"name": "diamond", **run, "tasks": [
        entry("D", "sleep_then_record", "D", 0.1, after=["B", "C"]),
        b or entry("B", "sleep_then_record", "B", SLOW, after=["A"]),
        c or entry("C", "sleep_then_record", "C", SLOW, after=["A"]),
        entry("A", "sleep_then_record", "A", 0.1),
    ]}


def span(key: str) -> tuple[float, float]:
    start = Execution.objects.get(key=f"{key}:start").at
    return start, Execution.objects.get(key=key).at


def by_name(run: Run) -> dict[str, Task]:
    return {t.name: t for t in Task.objects.filter(run=run)}


def finished(run_id: int, timeout: float = 60.0) -> Run:
    ended: Run = wait_for(
        lambda: Run.objects.filter(pk=run_id, finished_at__isnull=False).first(),
        timeout=timeout)
    return ended


def test_a_diamond_runs_in_dependency_order_on_two_workers(workers):
    run = runs.submit(diamond())
    workers.start()
    workers.start()

    assert finished(run.pk).state == RunState.COMPLETED
    a, b, c, d = (span(key) for key in "ABCD")
    assert a[1] <= b[0] and a[1] <= c[0], "B and C start after A ended"
    assert b[1] <= d[0] and c[1] <= d[0], "D starts after both B and C ended"
    assert b[0] < c[1] and c[0] < b[1], "B and C ran at the same time, on two workers"
    tasks = by_name(run)
    assert {t.state for t in tasks.values()} == {TaskState.SUCCEEDED}
    assert tasks["B"].worker_id != tasks["C"].worker_id


def test_halt_with_B_failing_never_runs_D_and_fails_the_run(workers, runtime_dir):
    go, c_may_end = runtime_dir / "go", runtime_dir / "c"
    failing = entry("B", "fail_after_file", str(go), after=["A"], max_attempts=1)
    running = entry("C", "wait_for_file", str(c_may_end), "C", after=["A"])
    run = runs.submit(diamond(b=failing, c=running, failure_policy="halt"))
    workers.start()
    workers.start()
    wait_for(lambda: Execution.objects.filter(key="C:start").exists(), timeout=30)
    go.touch()  # B fails while C runs
    wait_for(lambda: task(by_name(run)["B"].pk).state == TaskState.FAILED, timeout=30)

    assert Run.objects.get(pk=run.pk).state == RunState.FAILED, "at once, C still running"
    assert task(by_name(run)["D"].pk).state == TaskState.CANCELLED
    c_may_end.touch()
    ended = finished(run.pk)
    assert ended.state == RunState.FAILED
    assert "'B'" in ended.reason and "failed" in ended.reason
    tasks = by_name(run)
    assert tasks["D"].error.startswith(SKIPPED) and "'B'" in tasks["D"].error
    assert tasks["C"].state == TaskState.SUCCEEDED, "a running task finishes by default"
    assert not Execution.objects.filter(key__startswith="D").exists()


def test_halt_can_cancel_the_tasks_running_at_that_moment(workers, runtime_dir):
    gate = runtime_dir / "never"
    failing = entry("B", "fail_after_file", str(runtime_dir / "go"), after=["A"],
                    max_attempts=1)
    stuck = entry("C", "wait_for_file", str(gate), "C", after=["A"])
    run = runs.submit(diamond(b=failing, c=stuck, failure_policy="halt",
                              halt_running="cancel"))
    workers.start()
    workers.start()
    wait_for(lambda: Execution.objects.filter(key="C:start").exists(), timeout=30)
    (runtime_dir / "go").touch()  # B fails only once C is running

    ended = finished(run.pk)
    tasks = by_name(run)
    assert ended.state == RunState.FAILED
    assert tasks["C"].state == TaskState.CANCELLED and not tasks["C"].error.startswith(SKIPPED)
    assert not Execution.objects.filter(key="C").exists(), "C was stopped, not finished"
    assert tasks["D"].state == TaskState.CANCELLED


def test_continue_with_B_failing_completes_C_and_skips_D(workers):
    failing = entry("B", "fail_always", "B broke", after=["A"], max_attempts=1)
    run = runs.submit(diamond(b=failing, failure_policy="continue"))
    workers.start()
    workers.start()

    ended = finished(run.pk)
    tasks = by_name(run)
    assert tasks["C"].state == TaskState.SUCCEEDED
    assert tasks["D"].state == TaskState.CANCELLED
    assert tasks["D"].error == f"{SKIPPED}task 'B' (task {tasks['B'].pk}) upstream did not succeed"
    assert ended.state == RunState.FAILED, "not every task succeeded"
    assert ended.reason == "2 of 4 tasks did not succeed (1 cancelled, 1 failed)"
    assert not Execution.objects.filter(key__startswith="D").exists()


def test_pause_holds_new_claims_and_resume_releases_them(workers, runtime_dir):
    gate = runtime_dir / "a-may-end"
    run = runs.submit({"name": "paused", "tasks": [
        entry("A", "wait_for_file", str(gate), "A"),
        entry("B", "record", "B", after=["A"]),
        entry("C", "record", "C"),  # queued behind A: one worker, A is claimed first
    ]})
    workers.start()
    wait_for(lambda: Execution.objects.filter(key="A:start").exists(), timeout=30)

    runs.pause(run.pk)
    assert task(by_name(run)["C"].pk).state == TaskState.WAITING, "queued C is held"
    gate.touch()  # A finishes while the run is paused: B is free but must not start
    wait_for(lambda: task(by_name(run)["A"].pk).state == TaskState.SUCCEEDED, timeout=30)
    # The worker is alive and claiming: a task outside the run, enqueued last, runs...
    probe = enqueue("record", "probe")
    wait_for(lambda: task(probe.pk).state == TaskState.SUCCEEDED, timeout=30)
    # ...while the run's free tasks, older and so first in line, were not claimed.
    assert Run.objects.get(pk=run.pk).state == RunState.PAUSED
    assert {by_name(run)[n].state for n in "BC"} == {TaskState.WAITING}
    assert not Execution.objects.filter(key__in=["B", "C"]).exists()

    runs.resume(run.pk)
    assert finished(run.pk).state == RunState.COMPLETED
    assert set(Execution.objects.values_list("key", flat=True)) >= {"B", "C"}


def test_sequential_mode_runs_one_task_at_a_time_in_dependency_order(workers):
    run = runs.submit({"name": "debug", "mode": "sequential", "tasks": [
        entry("Z", "sleep_then_record", "Z", 0.3, after=["Y"]),
        entry("X", "sleep_then_record", "X", 0.3),
        entry("Y", "sleep_then_record", "Y", 0.3),
    ]})
    workers.start()
    workers.start()

    assert finished(run.pk).state == RunState.COMPLETED
    spans = sorted(span(key) for key in "XYZ")
    assert all(one[1] <= two[0] for one, two in itertools.pairwise(spans)), spans
    assert span("Y")[1] <= span("Z")[0]


def test_max_parallel_caps_the_runs_tasks_running_at_once(workers):
    run = runs.submit({"name": "capped", "max_parallel": 2, "tasks": [
        entry(f"T{i}", "sleep_then_record", f"T{i}", 0.6) for i in range(5)
    ]})
    for _ in range(3):
        workers.start()

    assert finished(run.pk).state == RunState.COMPLETED
    spans = [span(f"T{i}") for i in range(5)]
    for start, _ in spans:  # at each start, how many were running (itself included)
        assert sum(1 for s, e in spans if s <= start < e) <= 2, spans
    assert max(sum(1 for s, e in spans if s <= start < e) for start, _ in spans) == 2


def test_cancel_stops_running_tasks_and_cancels_the_rest(workers, runtime_dir):
    run = runs.submit({"name": "doomed", "tasks": [
        entry("A", "wait_for_file", str(runtime_dir / "never"), "A"),
        entry("B", "record", "B", after=["A"]),
    ]})
    workers.start()
    wait_for(lambda: Execution.objects.filter(key="A:start").exists(), timeout=30)

    runs.cancel(run.pk, by="ops")
    ended = finished(run.pk)
    tasks = by_name(run)
    assert ended.state == RunState.CANCELLED and ended.reason == "Cancelled by ops."
    assert tasks["A"].state == TaskState.CANCELLED and tasks["B"].state == TaskState.CANCELLED
    assert not Execution.objects.filter(key__in=["A", "B"]).exists()


def test_a_cycle_is_refused_naming_it_and_nothing_is_written(crucible):
    with pytest.raises(runs.InvalidRun, match="cycle: A → B → C → A"):
        runs.submit({"name": "loop", "tasks": [
            entry("A", "noop", after=["C"]), entry("B", "noop", after=["A"]),
            entry("C", "noop", after=["B"]), entry("D", "noop"),
        ]})
    with pytest.raises(runs.InvalidRun, match=r"tasks\[1\] \(B\).depends_on: no task named 'Q'"):
        runs.submit({"name": "typo", "tasks": [entry("A", "noop"), entry("B", "noop",
                                                                          after=["Q"])]})
    assert not Run.objects.exists() and not Task.objects.exists()


def test_the_tick_ends_a_run_whose_last_tasks_had_no_follow_up(crucible):
    run = runs.submit({"name": "flat", "tasks": [entry("A", "noop"), entry("B", "noop")]})
    assert not Task.objects.filter(run=run, has_dependents=True).exists(), "no follow-up"
    Task.objects.filter(run=run).update(state=TaskState.SUCCEEDED)

    assert runs.settle_finished() == [run.pk]
    assert Run.objects.get(pk=run.pk).state == RunState.COMPLETED
    assert runs.settle_finished() == []


def test_the_ticks_share_is_one_statement_while_no_run_is_under_way(crucible):
    run = runs.submit({"name": "flat", "tasks": [entry("A", "noop")]})
    Task.objects.filter(run=run).update(state=TaskState.SUCCEEDED)
    assert runs.sweep() == [run.pk], "an unfinished run is settled"

    with CaptureQueriesContext(connection) as queries:
        assert runs.sweep() == []
    assert len(queries.captured_queries) == 1, "an idle pool's tick pays one lookup for runs"


def test_pausing_a_finished_run_is_refused(crucible):
    run = Run.objects.create(name="old", state=RunState.COMPLETED)
    with pytest.raises(runs.RunConflict, match=f"run {run.pk} is COMPLETED"):
        runs.pause(run.pk)
    with pytest.raises(runs.RunNotFound):
        runs.resume(run.pk + 1000)


@pytest.fixture
def claimer(crucible):
    return Worker.objects.create(node="elsewhere", state=WorkerState.RUNNING)


def test_a_retry_keeps_its_lock_keys_and_while_the_run_is_paused_is_held(claimer):
    run = runs.submit({"name": "r", "tasks": [
        entry("A", "record", "A", max_attempts=3, retry_backoff=0, locks=["/data/a"])]})
    key = LockKey.objects.get(task__run=run)
    claimed = queue.claim_next(claimer.pk, ["default"])
    assert claimed is not None and claimed.id == key.task_id

    assert queue.fail(claimed, Ending(Outcome.ERROR, "flaky")) == TaskState.QUEUED
    assert task(claimed.id).state == TaskState.QUEUED
    assert LockKey.objects.get(pk=key.pk).held, "a retry keeps its keys"

    again = queue.claim_next(claimer.pk, ["default"])
    assert again is not None and again.id == claimed.id
    runs.pause(run.pk)
    assert queue.fail(again, Ending(Outcome.ERROR, "flaky")) == TaskState.QUEUED
    assert task(claimed.id).state == TaskState.WAITING, "held while the run is paused"
    assert not LockKey.objects.get(pk=key.pk).held, "and holds no keys while held"
    runs.resume(run.pk)
    assert task(claimed.id).state == TaskState.QUEUED
    assert LockKey.objects.get(pk=key.pk).held


def test_pausing_twice_changes_nothing(crucible):
    run = runs.submit({"name": "r", "tasks": [entry("A", "noop")]})
    assert runs.pause(run.pk).state == RunState.PAUSED
    assert runs.pause(run.pk).state == RunState.PAUSED
    assert runs.resume(run.pk).state == runs.resume(run.pk).state == RunState.RUNNING


def _release_statements(claimer: Worker, fan_out: int) -> list[str]:
    """The statements of the success of a run's root with ``fan_out`` dependants."""
    run = runs.submit({"name": f"fan {fan_out}", "tasks": [entry("root", "noop"), *(
        entry(f"leaf{i}", "noop", after=["root"]) for i in range(fan_out))]})
    claimed = queue.claim_next(claimer.pk, ["default"])
    assert claimed is not None and claimed.id == by_name(run)["root"].pk
    with CaptureQueriesContext(connection) as statements:
        queue.succeed(claimed, None, Ending(Outcome.SUCCEEDED))
    assert Task.objects.filter(run=run, state=TaskState.QUEUED).count() == fan_out
    Task.objects.filter(run=run).update(state=TaskState.SUCCEEDED)  # out of the next one's way
    return [q["sql"] for q in statements.captured_queries]


def test_a_fan_out_is_released_by_the_same_statements_whatever_its_size(claimer):
    one, many = _release_statements(claimer, 1), _release_statements(claimer, 2000)

    assert len(many) == len(one) <= 20, many
    updates = [sql for sql in many if sql.lstrip().upper().startswith("UPDATE")]
    assert len(updates) <= 6, updates  # the success, the counts, the edges, the queueing


def test_start_watch_follows_the_run_until_it_ends(workers, tmp_path):
    path = tmp_path / "RUN.json"
    path.write_text(json.dumps({"name": "ignored", "tasks": [
        entry("A", "record", "A"), entry("B", "record", "B", after=["A"])]}))
    workers.start()
    out = io.StringIO()
    call_command("runs", "start", "watched", "--file", str(path), "--watch", "--every", "0.2",
                 stdout=out)

    lines = out.getvalue().splitlines()
    run = Run.objects.get(name="watched")
    assert lines[0] == f"started run {run.pk} watched (2 tasks)"
    assert run.state == RunState.COMPLETED
    assert f"run {run.pk} watched: COMPLETED" in out.getvalue()

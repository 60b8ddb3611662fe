"""The state machines refuse illegal moves; retries back off exponentially with jitter."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from workers import queue
from workers.exceptions import IllegalTransition
from workers.models import Task
from workers.states import (
    TASK_TRANSITIONS,
    WORKER_TRANSITIONS,
    Outcome,
    TaskState,
    WorkerState,
    check,
    sources,
)


def test_finished_workers_never_move_again():
    for target in WorkerState:
        with pytest.raises(IllegalTransition):
            check(WORKER_TRANSITIONS, WorkerState.DEAD, target)
    check(WORKER_TRANSITIONS, WorkerState.STARTING, WorkerState.RUNNING)


def test_a_task_is_claimed_only_from_queued():
    assert sources(TASK_TRANSITIONS, TaskState.RUNNING) == [TaskState.QUEUED]
    with pytest.raises(IllegalTransition):
        check(TASK_TRANSITIONS, TaskState.SUCCEEDED, TaskState.RUNNING)
    with pytest.raises(IllegalTransition):
        check(TASK_TRANSITIONS, TaskState.WAITING, TaskState.RUNNING)


def test_backoff_grows_and_never_exceeds_the_cap():
    delays = [[queue.backoff(attempt, 1.0, 60.0) for _ in range(200)] for attempt in range(1, 9)]
    for attempt, samples in enumerate(delays, start=1):
        step = min(2 ** (attempt - 1), 60.0)
        assert all(step / 2 <= d <= step for d in samples)
    assert max(delays[0]) <= min(delays[2]), "each retry waits at least as long as the last"
    assert max(max(samples) for samples in delays) <= 60.0


def task(**fields: Any) -> Task:
    defaults = {"attempt": 1, "attempt_base": 0, "max_attempts": 3, "crash_count": 0,
                "retry_backoff": 1.0, "timeout": 10.0}
    return Task(**{**defaults, **fields})


@pytest.fixture
def settings_conf(settings):
    settings.CRUCIBLE = dataclasses.replace(settings.CRUCIBLE, quarantine_after=3)
    return settings.CRUCIBLE


@pytest.mark.parametrize(
    ("fields", "outcome", "state", "quarantined", "delayed"),
    [
        ({}, Outcome.ERROR, TaskState.QUEUED, False, True),
        ({"attempt": 3}, Outcome.ERROR, TaskState.FAILED, False, False),
        ({"attempt": 4, "attempt_base": 3}, Outcome.ERROR, TaskState.QUEUED, False, True),
        ({}, Outcome.WORKER_LOST, TaskState.QUEUED, False, False),
        ({"crash_count": 2, "max_attempts": 10, "attempt": 3}, Outcome.WORKER_LOST,
         TaskState.FAILED, True, False),
        ({}, Outcome.CANCELLED, TaskState.CANCELLED, False, False),
        ({}, Outcome.TIMED_OUT, TaskState.QUEUED, False, True),
    ],
)
def test_what_becomes_of_a_failed_attempt(settings_conf, fields, outcome, state, quarantined,
                                          delayed):
    verdict = queue.decide(task(**fields), queue.Ending(outcome))
    assert verdict.state == state
    assert verdict.quarantined is quarantined
    assert (verdict.delay > 0) is delayed


def test_raw_statements_declare_their_moves_and_illegal_ones_are_refused():
    from workers.exceptions import IllegalTransition
    from workers.states import TASK_TRANSITIONS, TaskState, moves

    moves(TASK_TRANSITIONS, (TaskState.QUEUED, TaskState.RUNNING))
    with pytest.raises(IllegalTransition):
        moves(TASK_TRANSITIONS, (TaskState.SUCCEEDED, TaskState.RUNNING))


def test_tasks_and_workers_move_through_one_transition_function():
    from workers import queue, states
    from workers.pool import lifecycle
    from workers.queue import dependencies

    modules = (queue, lifecycle, dependencies)
    assert all(vars(module)["move"] is states.move for module in modules)

"""The claim against a node's budget, statement by statement on the real database.

What a node's running tasks hold is summed by each claim: each path that ends a running
attempt gives its share back with its own transaction; each claim takes one only if it fits.
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connections, transaction
from django.utils import timezone

from tests.conftest import wait_for
from workers import queue
from workers.models import MemoryProfile, Node, Task, TaskAttempt, Worker
from workers.queue.hotpath import ClaimedTask
from workers.states import Outcome, TaskState, WorkerState

from .helpers import TASKS, enqueue, task
from .helpers import committed as committed_on

pytestmark = pytest.mark.django_db(transaction=True)

NODE = "budget-node"


@pytest.fixture
def node(settings, crucible):
    settings.CRUCIBLE = dataclasses.replace(settings.CRUCIBLE, node_address=NODE,
                                            memory_starvation_s=600.0)
    return Node.objects.create(name=NODE, memory_mb=1000, cpus=4)


@pytest.fixture
def pool(node):
    return [Worker.objects.create(node=NODE, state=WorkerState.RUNNING) for _ in range(4)]


def claim(worker: Worker) -> ClaimedTask | None:
    return queue.claim_next(worker.pk, ["default"])


def claimed(worker: Worker) -> ClaimedTask:
    token = claim(worker)
    assert token is not None, "it claimed nothing"
    return token


def committed() -> tuple[int, int]:
    return committed_on(NODE)


def sized(mb: int, **fields: object) -> Task:
    return enqueue("add", 1, 2, memory_mb=mb, **fields)


def ok() -> queue.Ending:
    return queue.Ending(Outcome.SUCCEEDED)


def test_claims_only_what_fits_and_a_smaller_task_behind_runs(pool):
    big, small, bigger, tiny = sized(600), sized(300), sized(500), sized(100)

    first, second, third = claimed(pool[0]), claimed(pool[1]), claimed(pool[2])

    assert first.id == big.pk
    assert second.id == small.pk
    assert third.id == tiny.pk, "500 does not fit in 100: passed over"
    assert committed() == (1000, 3)
    assert claim(pool[3]) is None
    assert task(bigger.pk).state == TaskState.QUEUED
    assert task(big.pk).node_id == Node.objects.get(name=NODE).pk


def test_cpus_are_budgeted_too(pool):
    wide, narrow = enqueue("add", 1, 2, memory_mb=10, cpus=3), sized(10, cpus=2)
    last = sized(10)

    assert claimed(pool[0]).id == wide.pk
    assert claimed(pool[1]).id == last.pk, "2 CPUs do not fit in the 1 left"
    assert committed() == (20, 4)
    assert claim(pool[2]) is None
    assert task(narrow.pk).state == TaskState.QUEUED


def test_success_gives_the_share_back_and_the_next_claim_uses_it(pool):
    first, second = sized(700, memory_limit_mb=900), sized(700, memory_limit_mb=900)
    token = claimed(pool[0])
    assert claim(pool[1]) is None

    following = queue.succeed_and_claim(token, 3, ok(), ["default"])

    assert task(first.pk).state == TaskState.SUCCEEDED
    assert following is not None and following.id == second.pk, "the freed share, at once"
    assert committed() == (700, 1)
    queue.succeed(following, 3, ok())
    assert committed() == (0, 0)
    ran_with = TaskAttempt.objects.filter(task__in=[first, second]).values_list(
        "memory_estimate_mb", "memory_limit_mb")
    assert list(ran_with) == [(700, 900), (700, 900)], "each success row says what it ran with"


def test_a_success_hands_over_to_a_larger_task_that_fits(pool):
    small, large = sized(300), sized(700)
    token = claimed(pool[0])

    following = queue.succeed_and_claim(token, 3, ok(), ["default"])

    assert task(small.pk).state == TaskState.SUCCEEDED
    assert following is not None and following.id == large.pk
    assert committed() == (700, 1)


def test_a_success_does_not_hand_over_to_a_larger_task_that_does_not_fit(pool):
    small, other, large = sized(300), sized(500), sized(600)
    token = claimed(pool[0])
    assert claimed(pool[1]).id == other.pk

    following = queue.succeed_and_claim(token, 3, ok(), ["default"])

    assert task(small.pk).state == TaskState.SUCCEEDED
    assert following is None, "600 does not fit beside 500 in 1000"
    assert task(large.pk).state == TaskState.QUEUED
    assert committed() == (500, 1)


@pytest.fixture
def hold_row(node):
    """PostgreSQL: let another transaction lock a row (``hold_row(statement, params)``)
    until the returned event is set, as a concurrent claim does until it commits."""
    if connections["default"].vendor != "postgresql":
        pytest.skip("SQLite serialises every write: row locks are PostgreSQL's")
    release, held = threading.Event(), threading.Event()
    holders: list[threading.Thread] = []

    def hold(statement: str, params: list[Any]) -> None:
        try:
            with transaction.atomic(), connections["default"].cursor() as cursor:
                cursor.execute(statement, params)
                held.set()
                release.wait(10)
        finally:
            connections.close_all()

    def start(statement: str, params: list[Any]) -> threading.Event:
        holders.append(threading.Thread(target=hold, args=(statement, params)))
        holders[0].start()
        assert held.wait(10)
        return release

    yield start
    release.set()
    for holder in holders:
        holder.join(10)


@pytest.fixture
def hold_node_row(hold_row):
    """PostgreSQL: another transaction holds the node's row, as a claim that may grow what
    the node holds does until it commits; set the returned event to let it go."""
    return lambda: hold_row("SELECT id FROM workers_node WHERE name = %s FOR NO KEY UPDATE",
                            [NODE])


@pytest.fixture
def hold_task_row(hold_row):
    """PostgreSQL: another claim is looking at a queued task: its candidate row is locked
    (FOR UPDATE, which every other claim's SKIP LOCKED passes over) until it commits."""
    return lambda task_id: hold_row("SELECT id FROM workers_task WHERE id = %s FOR UPDATE",
                                    [task_id])


def hand_over_in_thread(token: ClaimedTask) -> tuple[threading.Thread, dict[str, object]]:
    out: dict[str, object] = {}

    def run() -> None:
        try:
            out["next"] = queue.succeed_and_claim(token, 3, ok(), ["default"])
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_a_hand_over_to_a_task_no_larger_does_not_wait_for_the_node(pool, hold_node_row):
    first, second = sized(400, cpus=2), sized(400)
    token = claimed(pool[0])
    release = hold_node_row()

    thread, out = hand_over_in_thread(token)
    thread.join(10)

    assert not thread.is_alive(), "the same or less needs no turn at the node's row"
    assert isinstance(out["next"], ClaimedTask) and out["next"].id == second.pk
    release.set()
    assert task(first.pk).state == TaskState.SUCCEEDED
    assert committed() == (400, 1)


def test_a_hand_over_to_a_larger_task_waits_for_its_turn_at_the_node(pool, hold_node_row):
    first, second = sized(300), sized(700)
    token = claimed(pool[0])
    release = hold_node_row()

    thread, out = hand_over_in_thread(token)
    wait_for(lambda: task(first.pk).state == TaskState.SUCCEEDED)  # committed on its own
    thread.join(0.5)
    assert thread.is_alive(), "a claim that grows what the node holds takes its turn"
    assert task(second.pk).state == TaskState.QUEUED
    release.set()
    thread.join(10)

    assert isinstance(out["next"], ClaimedTask) and out["next"].id == second.pk
    assert committed() == (700, 1)


@pytest.mark.parametrize("outcome", [Outcome.ERROR, Outcome.CANCELLED, Outcome.TIMED_OUT])
def test_failing_requeueing_or_cancelling_gives_the_share_back(pool, outcome):
    job = sized(600, max_attempts=2, retry_backoff=0.0)
    token = claimed(pool[0])
    assert committed() == (600, 1)

    queue.fail(token, queue.Ending(outcome, "no"))

    assert task(job.pk).state in {TaskState.QUEUED, TaskState.CANCELLED}
    assert committed() == (0, 0)


def test_a_cancel_of_a_running_task_keeps_the_share_until_its_attempt_ends(pool):
    job = sized(600)
    token = claimed(pool[0])

    queue.cancel(job.pk)
    assert committed() == (600, 1), "still running: its memory is still in use"
    queue.fail(token, queue.Ending(Outcome.CANCELLED, "cancelled"))

    assert task(job.pk).state == TaskState.CANCELLED
    assert committed() == (0, 0)


def test_reclaiming_a_dead_workers_task_gives_the_share_back(pool):
    job = sized(600)
    claim(pool[0])
    Worker.objects.filter(pk=pool[0].pk).update(state=WorkerState.FAILED)

    assert queue.reclaim_expired_leases() == [job.pk]

    assert task(job.pk).state == TaskState.QUEUED
    assert committed() == (0, 0)
    assert claimed(pool[1]).id == job.pk
    assert committed() == (600, 1)


def test_an_expired_lease_and_a_lost_claim_reply_give_the_share_back(pool):
    expired, lost = sized(400), sized(400)
    claim(pool[0])
    claim(pool[1])
    Task.objects.filter(pk=expired.pk).update(lease_expires_at=timezone.now() - timedelta(1))

    assert queue.reclaim_expired_leases() == [expired.pk]
    assert queue.release_unheld(pool[1].pk) == [lost.pk]

    assert committed() == (0, 0)


def test_deleting_a_running_task_gives_the_share_back(pool):
    job = sized(600)
    claim(pool[0])

    Task.objects.filter(pk=job.pk).delete()

    assert committed() == (0, 0)


def test_an_idle_node_takes_a_task_larger_than_its_whole_budget_alone(pool):
    huge = sized(5000, force=True)
    small = sized(100)

    token = claimed(pool[0])
    assert token.id == huge.pk
    assert claim(pool[1]) is None, "nothing runs beside the oversized task"
    queue.succeed(token, 3, ok())
    assert claimed(pool[1]).id == small.pk


def starve(settings: Any, blocked: Task) -> None:
    """It has waited past the starvation bound."""
    settings.CRUCIBLE = dataclasses.replace(settings.CRUCIBLE, memory_starvation_s=60.0)
    Task.objects.filter(pk=blocked.pk).update(created_at=timezone.now() - timedelta(seconds=61))


def test_a_task_waiting_past_the_starvation_bound_is_no_longer_overtaken(settings, pool):
    running = sized(600)
    claim(pool[0])
    blocked, small = sized(800), sized(300)
    assert claimed(pool[1]).id == small.pk, "overtaken while it has not waited long"
    queue.succeed(claim_of(small.pk), 3, ok())

    later = sized(300)
    starve(settings, blocked)

    assert claim(pool[1]) is None, "the smaller task behind it waits now"
    queue.succeed(claim_of(running.pk), 3, ok())
    assert claimed(pool[1]).id == blocked.pk
    assert task(later.pk).state == TaskState.QUEUED


def test_a_starved_task_another_claim_is_looking_at_still_stops_the_tasks_behind_it(
        settings, pool, hold_task_row):
    """A claim locks the row it looks at and the others pass over locked rows: a claim
    made meanwhile must not take what waits behind the starved task."""
    sized(600)
    claim(pool[0])
    blocked, small = sized(800), sized(300)
    starve(settings, blocked)
    release = hold_task_row(blocked.pk)

    assert claim(pool[1]) is None, "the smaller task behind it waits"
    release.set()
    assert task(small.pk).state == TaskState.QUEUED


def test_a_hand_over_does_not_pass_a_starved_task_another_claim_is_looking_at(
        settings, pool, hold_task_row):
    sized(600)
    claim(pool[0])
    sized(300)
    token = claimed(pool[1])  # taken before the larger task had waited long
    blocked, small = sized(800), sized(300)
    starve(settings, blocked)
    release = hold_task_row(blocked.pk)

    following = queue.succeed_and_claim(token, 3, ok(), ["default"])

    assert following is None, "the smaller task behind it waits"
    release.set()
    assert task(small.pk).state == TaskState.QUEUED


def test_a_long_waiting_task_that_fits_and_another_claim_holds_stops_no_one(settings, pool,
                                                                           hold_task_row):
    """A backlog older than the starvation bound is all starved: the head another claim
    holds fits, so that claim takes it, and this one the next."""
    held, following = sized(300), sized(300)
    starve(settings, held)
    release = hold_task_row(held.pk)

    assert claimed(pool[0]).id == following.pk
    release.set()


def test_an_idle_node_short_of_memory_for_now_waits_for_it(pool):
    Node.objects.filter(name=NODE).update(memory_mb=500, ceiling_mb=1000)  # others use memory
    job = sized(800)

    assert claim(pool[0]) is None, "it would fit once memory comes back: not alone now"
    Node.objects.filter(name=NODE).update(memory_mb=900)
    assert claimed(pool[0]).id == job.pk


def test_a_starved_task_too_large_for_the_node_does_not_stop_it(settings, pool):
    settings.CRUCIBLE = dataclasses.replace(settings.CRUCIBLE, memory_starvation_s=1.0)
    sized(100)
    claim(pool[0])
    huge, small = sized(5000, force=True), sized(300)
    Task.objects.filter(pk=huge.pk).update(created_at=timezone.now() - timedelta(hours=1))

    assert claimed(pool[1]).id == small.pk, "it runs only alone: it stops no one meanwhile"


def test_a_task_not_due_yet_is_not_a_barrier(settings, pool):
    settings.CRUCIBLE = dataclasses.replace(settings.CRUCIBLE, memory_starvation_s=1.0)
    sized(600)
    claim(pool[0])
    sized(800, run_after=timezone.now() + timedelta(hours=1))
    small = sized(300)

    assert claimed(pool[1]).id == small.pk


def test_without_a_node_row_nothing_is_accounted(settings, crucible):
    settings.CRUCIBLE = dataclasses.replace(settings.CRUCIBLE, node_address="unregistered")
    worker = Worker.objects.create(node="unregistered", state=WorkerState.RUNNING)
    job = sized(10**6, force=True)

    token = queue.claim_next(worker.pk, ["default"])

    assert token is not None and token.id == job.pk
    assert task(job.pk).node_id is None


def claim_of(task_id: int) -> ClaimedTask:
    row = task(task_id)
    assert row.worker_id is not None and row.last_attempted_at is not None
    return ClaimedTask(id=row.pk, attempt=row.attempt, worker_id=row.worker_id,
                       func_path=row.func_path, args=row.args, kwargs=row.kwargs,
                       timeout=row.timeout, max_attempts=row.max_attempts,
                       memory_mb=row.memory_mb, started_at=row.last_attempted_at)


def test_two_workers_of_one_node_never_both_take_the_last_slot(pool):
    """A claim that commits late is seen by the claim that waited for it: no over-commit.

    The first claim's transaction stays open while the second claims; on PostgreSQL the
    second waits on the node's row (task rows it would skip), on SQLite on the write lock.
    """
    first, second = sized(600), sized(600)
    claimed: dict[str, ClaimedTask | None] = {}
    holding, release = threading.Event(), threading.Event()

    def slow_claim() -> None:
        try:
            with transaction.atomic():
                claimed["slow"] = claim(pool[0])
                holding.set()
                release.wait(10)
        finally:
            connections.close_all()

    def racing_claim() -> None:
        try:
            claimed["racing"] = claim(pool[1])
        finally:
            connections.close_all()

    slow = threading.Thread(target=slow_claim)
    slow.start()
    assert holding.wait(10)
    racing = threading.Thread(target=racing_claim)
    racing.start()
    racing.join(0.5)
    assert racing.is_alive(), "the second claim waits for the first to commit"
    release.set()
    slow.join(10)
    racing.join(10)

    assert claimed["slow"] is not None and claimed["slow"].id == first.pk
    assert claimed["racing"] is None, "600 + 600 would exceed the 1000 MB budget"
    assert committed() == (600, 1)
    assert task(second.pk).state == TaskState.QUEUED


def test_an_operators_retry_estimates_the_task_again(settings, pool):
    job = enqueue("add", 1, 2, max_attempts=1)
    assert (task(job.pk).memory_estimate_mb, task(job.pk).memory_source) == (
        settings.CRUCIBLE.memory_per_task_mb, "default")
    queue.fail(claimed(pool[0]), queue.Ending(Outcome.ERROR, "no"))
    settings.CRUCIBLE = dataclasses.replace(settings.CRUCIBLE, memory_per_task_mb=321)

    queue.retry(job.pk)

    assert (task(job.pk).state, task(job.pk).memory_estimate_mb) == (TaskState.QUEUED, 321)


def test_an_operators_retry_keeps_a_scaled_tasks_scale(settings, pool):
    # Learned per unit of scale (peak = 10 MB per unit); no measure of the function's
    # scale is registered in this process, as in a web process that never loaded its kind.
    MemoryProfile.objects.create(func_path=f"{TASKS}.add", runs=4,
                                 samples=[[10, 100], [20, 200], [30, 300], [40, 400]])
    job = enqueue("add", 1, 2, max_attempts=1)
    Task.objects.filter(pk=job.pk).update(memory_scale=25.0)
    queue.fail(claimed(pool[0]), queue.Ending(Outcome.ERROR, "no"))

    queue.retry(job.pk)

    again = task(job.pk)
    assert (again.memory_source, again.memory_scale) == ("learned", 25.0)
    assert 250 <= again.memory_estimate_mb <= 300, "about 10 MB a unit, plus the margin"

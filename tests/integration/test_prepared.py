"""PostgreSQL: the hot path's statements are prepared on the server, and can be turned off."""

from __future__ import annotations

import dataclasses

import pytest
from django.db import connection, transaction

from workers import queue
from workers.models import Task, Worker
from workers.states import Outcome, TaskState

from .helpers import enqueue

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        "connection.vendor != 'postgresql'",
        reason="prepared statements are PostgreSQL's; this runs in the PostgreSQL pass",
    ),
]


def _prepared_claims() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%SKIP LOCKED%"],
        )
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def _drain(worker: Worker, results: list[object]) -> list[int]:
    """Claim and succeed tasks in this process, as the supervisor does."""
    done = []
    token = queue.claim_next(worker.pk, ["default"])
    for value in results:
        assert token is not None
        done.append(token.id)
        ending = queue.Ending(Outcome.SUCCEEDED, peak_rss_bytes=3_000_000_000)
        token = queue.succeed_and_claim(token, value, ending, ["default"])
    assert token is None
    return done


def test_the_claim_and_success_run_as_prepared_statements(crucible):
    results: list[object] = [{"answer": 42}, [1, "two"], None, "text", 2**40]
    for n in range(len(results)):
        enqueue("add", n, 1)
    worker = Worker.objects.create(node="a")

    done = _drain(worker, results)

    assert _prepared_claims() >= 1
    stored = [Task.objects.get(pk=pk) for pk in done]
    assert [t.result for t in stored] == results
    assert {t.state for t in stored} == {TaskState.SUCCEEDED}
    assert {t.peak_rss_bytes for t in stored} == {3_000_000_000}


def test_they_are_prepared_again_after_a_reconnect(crucible):
    enqueue("add", 1, 1)
    enqueue("add", 2, 2)
    worker = Worker.objects.create(node="a")
    first = queue.claim_next(worker.pk, ["default"])
    assert first is not None
    connection.close()

    second = queue.succeed_and_claim(first, 2, queue.Ending(Outcome.SUCCEEDED), ["default"])

    assert second is not None and second.id != first.id
    assert Task.objects.get(pk=first.id).result == 2
    assert _prepared_claims() >= 1


def test_turned_off_nothing_is_prepared(crucible, settings):
    settings.CRUCIBLE = dataclasses.replace(settings.CRUCIBLE, prepared_statements=False)
    connection.close()  # a fresh session, with no statements prepared by earlier tests
    enqueue("add", 1, 1)
    worker = Worker.objects.create(node="a")

    done = _drain(worker, ["plain"])

    assert Task.objects.get(pk=done[0]).result == "plain"
    assert _prepared_claims() == 0
    assert _plan_cache_mode() == "auto", "nor is the plan setting sent (docs/operations.md)"


def _claim_plans() -> tuple[int, int]:
    """(generic, custom) plans the claims prepared on this session have run with."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(sum(generic_plans), 0), COALESCE(sum(custom_plans), 0)"
                       " FROM pg_prepared_statements WHERE statement LIKE %s", ["%SKIP LOCKED%"])
        row = cursor.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _plan_cache_mode() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW plan_cache_mode")
        row = cursor.fetchone()
    assert row is not None
    return str(row[0])


def test_each_claim_runs_the_plan_made_once_not_a_new_one(crucible):
    """PostgreSQL made a custom plan at every call (it estimated the generic one dearer),
    and planning cost more than running the claim."""
    connection.close()  # a fresh session
    for n in range(8):
        enqueue("add", n, 1)
    worker = Worker.objects.create(node="a")

    _drain(worker, list(range(8)))

    generic, custom = _claim_plans()
    assert custom == 0 and generic >= 8, (generic, custom)


def test_the_plan_setting_waits_for_a_call_outside_a_transaction(crucible):
    """Set inside a transaction, a rollback would undo it while the worker believed it set."""
    enqueue("add", 1, 1)
    enqueue("add", 2, 2)
    worker = Worker.objects.create(node="a")
    connection.close()
    with pytest.raises(RuntimeError), transaction.atomic():
        assert queue.claim_next(worker.pk, ["default"]) is not None
        raise RuntimeError("rolled back")
    assert _plan_cache_mode() == "auto"

    assert queue.claim_next(worker.pk, ["default"]) is not None

    assert _plan_cache_mode() == "force_generic_plan"

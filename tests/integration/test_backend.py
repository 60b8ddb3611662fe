"""Django's tasks API end to end: enqueue here, a real ``runworker --batch`` runs, read back.

Only the public ``django.tasks`` API drives the round trip; Crucible's tables are read
only to see what happened inside the worker (Execution rows, progress).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.tasks import TaskResult, TaskResultStatus
from django.tasks.exceptions import TaskResultMismatch
from django.tasks.signals import task_enqueued
from django.utils import timezone

from tests.testapp import backend_tasks
from tests.testapp.models import Execution
from workers.backends import CrucibleBackend, enqueue_many
from workers.models import Task

# What a TaskResult says of its task, compared between one built and one read back.
RESULT_FIELDS = ("id", "status", "enqueued_at", "started_at", "finished_at",
                 "last_attempted_at", "args", "kwargs", "backend", "errors", "worker_ids")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

DEFAULT_ONLY = ("--batch", "--queue", "default")


def signals_of(result: TaskResult[..., Any]) -> list[tuple[str, int | None]]:
    rows = Execution.objects.filter(task_id=int(result.id), key__regex=r"^(started|finished) ")
    for row in rows:
        assert row.pid != os.getpid(), "task signals are sent in the worker's executor"
    return [(row.key, row.attempt) for row in rows.order_by("id")]


def executed(key: str) -> Execution:
    return Execution.objects.get(key=key)


@pytest.fixture
def enqueued() -> Iterator[list[tuple[type, TaskResult[..., Any]]]]:
    received: list[tuple[type, TaskResult[..., Any]]] = []

    def on_enqueued(sender: type, task_result: TaskResult[..., Any], **kwargs: Any) -> None:
        received.append((sender, task_result))

    task_enqueued.connect(on_enqueued)
    yield received
    task_enqueued.disconnect(on_enqueued)


def test_round_trip_results_context_async_priority_and_signals(workers, enqueued):
    sent = {
        "add": backend_tasks.add.enqueue(2, 3),
        "low": backend_tasks.record.using(priority=-10).enqueue("low"),
        "high": backend_tasks.urgent.enqueue("high"),
        "mid": backend_tasks.record.using(priority=10).enqueue("mid"),
        "context": backend_tasks.with_context.enqueue("ctx"),
        "lucky": backend_tasks.second_time_lucky.enqueue(),
        "async": async_to_sync(backend_tasks.async_multiply.aenqueue)(6, 7),
        "async_context": backend_tasks.async_with_context.enqueue("actx"),
        "progress": backend_tasks.progress.enqueue(3),
        "robust": backend_tasks.despite_a_failing_receiver.enqueue(),
    }
    assert sent["add"].status == TaskResultStatus.READY
    assert sent["add"].enqueued_at is not None and sent["add"].started_at is None
    assert enqueued == [(CrucibleBackend, result) for result in sent.values()]

    workers.start(*DEFAULT_ONLY)
    assert workers.wait_all() == [0], workers.output(0)

    check_plain_result(sent["add"])
    check_priorities(sent)
    check_context(sent["context"], sent["lucky"])
    check_async(sent["async"], sent["async_context"])
    check_signals(sent["add"], sent["lucky"], sent["robust"])
    sent["progress"].refresh()
    assert sent["progress"].return_value == 3
    assert progress_message(sent["progress"]) == "step 3 of 3"
    with pytest.raises(TaskResultMismatch):
        backend_tasks.add.get_result(sent["low"].id)


def progress_message(result: TaskResult[..., Any]) -> str:
    return Task.objects.get(pk=int(result.id)).progress_message


def check_plain_result(added: TaskResult[..., Any]) -> None:
    result = backend_tasks.add.get_result(added.id)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == 5
    assert result.args == [2, 3] and result.kwargs == {}
    assert result.errors == [] and result.attempts == 1
    assert result.enqueued_at and result.started_at and result.finished_at
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.last_attempted_at == result.started_at
    assert result.worker_ids == [str(Task.objects.get(pk=int(added.id)).worker_id)]


def check_priorities(sent: dict[str, TaskResult[..., Any]]) -> None:
    order = [executed(key).at for key in ("high", "mid", "low")]
    assert order == sorted(order), "higher priority runs first"
    low = backend_tasks.record.get_result(sent["low"].id)
    assert (low.task.priority, sent["mid"].task.priority, sent["high"].task.priority) == (
        -10, 10, 50
    )


def check_context(with_context: TaskResult[..., Any], lucky: TaskResult[..., Any]) -> None:
    value = backend_tasks.with_context.get_result(with_context.id).return_value
    worker_id = str(Task.objects.get(pk=int(with_context.id)).worker_id)
    assert value == {"attempt": 1, "id": with_context.id, "status": "RUNNING",
                     "worker_ids": [worker_id], "args": ["ctx"]}
    assert progress_message(with_context) == "half way"

    lucky.refresh()
    assert lucky.status == TaskResultStatus.SUCCESSFUL
    assert lucky.return_value == 2 and lucky.attempts == 2
    assert [e.exception_class for e in lucky.errors] == [RuntimeError]
    assert "first attempt fails" in lucky.errors[0].traceback


def check_async(awaited: TaskResult[..., Any], with_context: TaskResult[..., Any]) -> None:
    result = async_to_sync(backend_tasks.async_multiply.aget_result)(awaited.id)
    value: object = result.return_value  # the stubs expect a coroutine here
    assert value == 42
    async_to_sync(with_context.arefresh)()
    text: object = with_context.return_value
    assert text == f"actx:1:{with_context.id}"
    assert progress_message(with_context) == "actx done"


def check_signals(added: TaskResult[..., Any], lucky: TaskResult[..., Any],
                  robust: TaskResult[..., Any]) -> None:
    assert signals_of(added) == [("started add RUNNING CrucibleBackend", 1),
                                 ("finished add SUCCESSFUL CrucibleBackend", 1)]
    assert signals_of(lucky) == [
        ("started second_time_lucky RUNNING CrucibleBackend", 1),
        ("finished second_time_lucky FAILED CrucibleBackend", 1),
        ("started second_time_lucky RUNNING CrucibleBackend", 2),
        ("finished second_time_lucky SUCCESSFUL CrucibleBackend", 2),
    ]
    robust.refresh()
    assert robust.return_value == "done", "a failing signal receiver does not fail the task"


def test_queue_name_is_run_only_by_workers_of_that_queue(workers):
    elsewhere = backend_tasks.elsewhere.enqueue("elsewhere")
    here = backend_tasks.record.enqueue("here")
    assert elsewhere.task.queue_name == backend_tasks.OTHER_QUEUE

    workers.start("--batch", "--queue", backend_tasks.OTHER_QUEUE)
    assert workers.wait_all() == [0], workers.output(0)

    elsewhere.refresh()
    here.refresh()
    assert elsewhere.status == TaskResultStatus.SUCCESSFUL
    assert elsewhere.return_value == "elsewhere"
    assert here.status == TaskResultStatus.READY


def test_failures_give_one_error_per_attempt(workers):
    failing = backend_tasks.always_fails.enqueue("boom")
    slow = backend_tasks.too_slow.enqueue(30)
    bad_value = backend_tasks.not_json.enqueue()

    workers.start(*DEFAULT_ONLY)
    assert workers.wait_all() == [0], workers.output(0)

    failing.refresh()
    assert failing.status == TaskResultStatus.FAILED
    assert failing.attempts == 2 and len(set(failing.worker_ids)) == 1
    assert [e.exception_class for e in failing.errors] == [ValueError, ValueError]
    assert all("ValueError: boom" in e.traceback for e in failing.errors)
    assert failing.finished_at is not None
    with pytest.raises(ValueError, match="Task failed"):
        _ = failing.return_value

    slow.refresh()
    assert slow.status == TaskResultStatus.FAILED and slow.attempts == 1
    assert [e.exception_class_path for e in slow.errors] == ["builtins.TimeoutError"]
    assert "Timed out after 0.5 s" in slow.errors[0].traceback

    bad_value.refresh()
    assert [e.exception_class for e in bad_value.errors] == [TypeError]
    assert "not JSON serializable" in bad_value.errors[0].traceback
    assert signals_of(slow) == [("started too_slow RUNNING CrucibleBackend", 1)]


def test_run_after_is_not_run_before_its_time(workers):
    now = backend_tasks.record.enqueue("now")
    later_at = timezone.now() + timedelta(seconds=1)
    later = backend_tasks.record.using(run_after=later_at).enqueue("later")
    assert later.task.run_after == later_at

    workers.start(*DEFAULT_ONLY)
    assert workers.wait_all() == [0], workers.output(0)

    later.refresh()
    now.refresh()
    assert later.status == now.status == TaskResultStatus.SUCCESSFUL, "--batch waited for it"
    assert later.started_at is not None and later.started_at >= later_at
    assert executed("now").at <= executed("later").at
    assert executed("later").at >= later_at.timestamp()


def test_a_first_attempts_task_result_is_built_from_the_claim_without_a_read(crucible):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from workers import context, queue
    from workers.backends import execution, results
    from workers.models import Worker

    enqueued = backend_tasks.urgent.enqueue("k")
    worker = Worker.objects.create(node="n", state="RUNNING")
    token = queue.claim_next(worker.pk, [backend_tasks.urgent.queue_name])
    assert token is not None and token.id == int(enqueued.id)
    alias = enqueued.backend
    context.activate(context.TaskContext(token.id, token.attempt, worker.pk, lambda f, m: None))
    try:
        with CaptureQueriesContext(connection) as queries:
            built = execution._attempt_result(backend_tasks.urgent, alias, ["k"], {},
                                              token.row_facts())
        row, attempts = results.load(token.id)
        read = results.build(backend_tasks.urgent.using(priority=row.priority,
                                                        queue_name=row.queue, backend=alias),
                             row, attempts, alias)
    finally:
        context.activate(None)

    assert len(queries.captured_queries) == 0, "nothing read back"
    fields = RESULT_FIELDS
    assert {f: getattr(built, f) for f in fields} == {f: getattr(read, f) for f in fields}
    assert (built.task.priority, built.task.queue_name) == (50, read.task.queue_name)


def test_enqueue_many_runs_every_call_and_sends_each_enqueued_signal(workers, enqueued):
    many = enqueue_many(backend_tasks.add, [((n, 1), {}) for n in range(20)])

    assert [r.status for r in many] == [TaskResultStatus.READY] * 20
    assert len(enqueued) == 20 and {r.id for _, r in enqueued} == {r.id for r in many}
    assert Task.objects.filter(queue=backend_tasks.add.queue_name).count() == 20
    workers.start("--batch")
    assert workers.wait_all(timeout=90) == [0]
    for result in many:
        result.refresh()
    assert [r.return_value for r in many] == [n + 1 for n in range(20)]


def test_enqueue_many_returns_the_results_get_result_reads(crucible):
    many = enqueue_many(backend_tasks.add, [((n,), {"b": (n, 2)}) for n in range(5)])

    fields = RESULT_FIELDS
    for result in many:
        read = backend_tasks.add.get_result(result.id)
        assert {f: getattr(result, f) for f in fields} == {f: getattr(read, f) for f in fields}
        assert result.task == read.task
    assert many[3].kwargs == {"b": [3, 2]}, "normalised as Django normalises a call"


def test_enqueue_returns_the_result_get_result_reads(crucible):
    """``.enqueue()`` builds its result from what the insert returned, not from a row it
    reads back: it must be the result a read gives."""
    fields = RESULT_FIELDS
    later = timezone.now() + timedelta(hours=1)
    plain = backend_tasks.add.enqueue(1, b=(2, 3))  # type: ignore[arg-type]  # normalised below
    later_one = backend_tasks.add.using(priority=7, run_after=later).enqueue(4, 5)
    for result in (plain, later_one):
        read = backend_tasks.add.get_result(result.id)
        assert {f: getattr(result, f) for f in fields} == {f: getattr(read, f) for f in fields}
    assert plain.task == backend_tasks.add.get_result(plain.id).task
    assert plain.kwargs == {"b": [2, 3]}, "normalised as Django normalises a call"
    assert later_one.task.priority == 7 and later_one.task.run_after == later


def test_enqueue_many_refuses_a_call_that_does_not_fit_and_writes_nothing(crucible):
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = [((1, 2), {}), ((1,), {}),
                                                           ((3, 4), {})]
    with pytest.raises(TypeError, match=r"tasks\[1\]\.args"):
        backend_tasks.add.enqueue_many(calls)  # type: ignore[attr-defined]  # the method

    assert not Task.objects.exists()

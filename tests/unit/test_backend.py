"""The Crucible tasks backend without workers: definition, enqueue, results, checks."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core import checks
from django.tasks import TaskResultStatus, default_task_backend, task, task_backends
from django.tasks.exceptions import InvalidTask, InvalidTaskBackend, TaskResultDoesNotExist
from django.test import override_settings
from django.utils import timezone

from tests.testapp import backend_tasks
from workers import queue
from workers.backends import CrucibleBackend, CrucibleTask, errors
from workers.backends.backend import ADMITTED_MAX
from workers.models import Task, TaskAttempt
from workers.spec import TaskSpec
from workers.states import Outcome, TaskState

BACKEND = "workers.backends.CrucibleBackend"


def tasks_setting(**params: Any) -> dict[str, Any]:
    return {"default": {"BACKEND": BACKEND, **params}}


def sample(x: int) -> int:
    return x


@task(max_attempts=4, timeout=60, memory_mb=512)  # type: ignore[call-overload, untyped-decorator]
def limited(x: int) -> int:
    return x


def misplaced() -> None:
    return None


renamed = task(misplaced)


# --- definition ---------------------------------------------------------------------


def test_backend_declares_every_capability() -> None:
    backend = task_backends["default"]
    assert isinstance(backend, CrucibleBackend)
    assert backend.task_class is CrucibleTask
    assert backend.supports_defer and backend.supports_async_task
    assert backend.supports_get_result and backend.supports_priority


def test_task_keywords_reach_the_crucible_task() -> None:
    assert isinstance(limited, CrucibleTask)
    assert (limited.max_attempts, limited.timeout, limited.memory_mb) == (4, 60, 512)
    assert limited.retry_backoff is None
    bare = task(sample)
    assert isinstance(bare, CrucibleTask) and bare.max_attempts is None


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ({"max_attempts": 0}, "max_attempts must be a whole number"),
        ({"max_attempts": 2.5}, "max_attempts must be a whole number"),
        ({"max_attempts": True}, "max_attempts must be a whole number"),
        ({"timeout": 0}, "timeout must be a number of seconds greater than 0"),
        ({"timeout": "60"}, "timeout must be a number"),
        ({"timeout": math.inf}, "timeout must be a number"),
        ({"memory_mb": -1}, "memory_mb must be a whole number of megabytes"),
        ({"retry_backoff": -0.5}, "retry_backoff must be a number of seconds, 0 or more"),
        ({"queue_name": "q" * 101}, "queue_name must be at most 100 characters"),
        ({"priority": 101}, "priority must be a whole number between"),
    ],
)
def test_invalid_task_is_refused_at_decoration(keywords: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidTask, match=message):
        task(**keywords)(sample)


def test_queue_names_are_checked_against_queues(settings: Any) -> None:
    settings.TASKS = tasks_setting(QUEUES=["default", "sims"])
    assert task(queue_name="sims")(sample).queue_name == "sims"
    with pytest.raises(InvalidTask, match="Queue 'gpu' is not valid"):
        task(queue_name="gpu")(sample)
    with pytest.raises(InvalidTask, match="Queue 'gpu' is not valid"):
        task(sample).using(queue_name="gpu")


# --- enqueue ------------------------------------------------------------------------


@pytest.mark.django_db
def test_enqueue_stores_a_crucible_task(settings: Any) -> None:
    settings.TASKS = tasks_setting(QUEUES=[], OPTIONS={"max_attempts": 7, "retry_backoff": 2.5})
    run_after = timezone.now() + timedelta(hours=1)
    result = limited.using(priority=5, queue_name="sims", run_after=run_after).enqueue(3)

    assert result.status == TaskResultStatus.READY
    assert result.args == [3] and result.kwargs == {} and result.attempts == 0
    row = Task.objects.get(pk=int(result.id))
    assert result.enqueued_at == row.created_at
    assert row.state == TaskState.QUEUED
    assert row.func_path == "tests.unit.test_backend.limited"
    assert (row.queue, row.priority, row.run_after) == ("sims", 5, run_after)
    assert (row.max_attempts, row.timeout, row.memory_mb, row.retry_backoff) == (4, 60, 512, 2.5)


@pytest.mark.django_db
def test_enqueue_without_limits_uses_the_worker_settings(crucible: Any) -> None:
    row = Task.objects.get(pk=int(backend_tasks.add.enqueue(1, 2).id))
    assert (row.max_attempts, row.timeout) == (crucible.max_attempts, crucible.task_timeout)
    assert row.memory_mb is None and row.retry_backoff is None


@pytest.mark.django_db
def test_enqueue_refuses_arguments_that_are_not_json() -> None:
    with pytest.raises(TypeError, match="Unsupported type"):
        backend_tasks.add.enqueue(object(), 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kwargs: must be JSON-serialisable"):
        backend_tasks.add.enqueue(a=math.nan, b=1)  # type: ignore[arg-type]
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_enqueue_refuses_a_task_its_worker_could_not_import() -> None:
    for _ in range(2):  # a refusal is not remembered as an admission
        with pytest.raises(InvalidTask, match="is not this task"):
            renamed.enqueue()
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_the_tasks_a_backend_remembers_as_admitted_are_bounded() -> None:
    later = timezone.now() + timedelta(hours=1)
    for minute in range(ADMITTED_MAX + 10):  # a script that enqueues each with its own time
        backend_tasks.add.using(run_after=later + timedelta(minutes=minute)).enqueue(1, 2)
    backend = backend_tasks.add.get_backend()
    assert isinstance(backend, CrucibleBackend)
    assert 0 < len(backend.admitted) <= ADMITTED_MAX
    assert Task.objects.count() == ADMITTED_MAX + 10


@pytest.mark.django_db
def test_enqueue_with_bad_options_is_refused(settings: Any) -> None:
    settings.TASKS = tasks_setting(OPTIONS={"timeout": -1})
    with pytest.raises(InvalidTaskBackend, match="OPTIONS: timeout must be"):
        backend_tasks.add.enqueue(1, 2)


@pytest.mark.django_db(transaction=True)
def test_aenqueue_and_aget_result() -> None:
    result = async_to_sync(backend_tasks.add.aenqueue)(1, 2)
    again = async_to_sync(backend_tasks.add.aget_result)(result.id)
    assert again.id == result.id and again.status == TaskResultStatus.READY
    assert again.args == [1, 2] and again.task.func is backend_tasks.add.func


# --- results ------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "result_id", ["999999", "abc", "", "-1", "1.5", " 1", "\u0661", "9" * 30, "0x1"]
)
def test_unknown_or_malformed_ids_do_not_exist(result_id: str) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(result_id)
    with pytest.raises(TaskResultDoesNotExist):
        async_to_sync(default_task_backend.aget_result)(result_id)


@pytest.mark.django_db
def test_a_plain_crucible_task_is_not_a_django_task_result() -> None:
    row = queue.enqueue(TaskSpec(func_path="tests.testapp.tasks.add", args=[1, 2]))
    with pytest.raises(TaskResultDoesNotExist, match="not a Django task"):
        default_task_backend.get_result(str(row.pk))


def _row(state: str, attempt: int = 0, **fields: Any) -> Task:
    return Task.objects.create(func_path=backend_tasks.add.module_path, args=[1, 2], state=state,
                               attempt=attempt, timeout=60, **fields)


def _attempt(row: Task, number: int, outcome: str, **fields: Any) -> None:
    TaskAttempt.objects.create(task=row, number=number, outcome=outcome,
                               finished_at=timezone.now(), **fields)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("state", "status"),
    [
        (TaskState.WAITING, TaskResultStatus.READY),
        (TaskState.QUEUED, TaskResultStatus.READY),
        (TaskState.RUNNING, TaskResultStatus.RUNNING),
        (TaskState.SUCCEEDED, TaskResultStatus.SUCCESSFUL),
        (TaskState.FAILED, TaskResultStatus.FAILED),
        (TaskState.CANCELLED, TaskResultStatus.FAILED),
    ],
)
def test_states_map_to_django_statuses(state: str, status: TaskResultStatus) -> None:
    result = backend_tasks.add.get_result(str(_row(state, result=3).pk))
    assert result.status == status
    if status == TaskResultStatus.SUCCESSFUL:
        assert result.return_value == 3


@pytest.mark.django_db
def test_every_failed_attempt_is_an_error_with_an_exception_class() -> None:
    row = _row(TaskState.RUNNING, attempt=5)
    _attempt(row, 1, Outcome.ERROR, exception_class="builtins.KeyError", traceback="Traceback…")
    _attempt(row, 2, Outcome.TIMED_OUT, error="Timed out after 60 s")
    _attempt(row, 3, Outcome.CRASHED, error="Task process crashed: killed by signal 9")
    _attempt(row, 4, Outcome.WORKER_LOST, error="worker 7 is gone")
    _attempt(row, 5, Outcome.CANCELLED)  # written after the row was read: not yet shown

    result = backend_tasks.add.get_result(str(row.pk))
    assert [e.exception_class for e in result.errors] == [
        KeyError, TimeoutError, errors.TaskCrashed, errors.WorkerLost,
    ]
    assert result.errors[0].traceback == "Traceback…"
    assert result.errors[1].traceback == "TimeoutError: Timed out after 60 s"
    assert result.attempts == 5, "four finished attempts and the running one"


@pytest.mark.parametrize(
    ("outcome", "kind"),
    [
        (Outcome.CANCELLED, errors.TaskCancelled),
        (Outcome.ABORTED, errors.WorkerAborted),
        (Outcome.LEASE_EXPIRED, errors.LeaseExpired),
        (Outcome.ERROR, Exception),
    ],
)
@pytest.mark.django_db
def test_outcomes_without_an_exception_name_a_crucible_class(outcome: str,
                                                             kind: type) -> None:
    row = _row(TaskState.FAILED, attempt=1)
    _attempt(row, 1, outcome, error="it ended")
    [error] = backend_tasks.add.get_result(str(row.pk)).errors
    assert error.exception_class is kind


# --- system checks ------------------------------------------------------------------


def _messages(**tasks: Any) -> list[tuple[str, str]]:
    with override_settings(TASKS=tasks_setting(**tasks)):
        found = checks.run_checks()
    return [(m.id or "", m.msg) for m in found if (m.id or "").startswith("workers.")]


@pytest.mark.django_db  # model checks ask the database about its features
def test_a_sound_configuration_passes_the_checks() -> None:
    assert _messages(QUEUES=[], OPTIONS={"max_attempts": 1, "timeout": 30.5}) == []
    assert _messages(QUEUES=["default", "sims"]) == []


@pytest.mark.parametrize(
    ("params", "check_id", "text"),
    [
        ({"OPTIONS": {"max_attempt": 3}}, "workers.E104", "unknown key 'max_attempt'"),
        ({"OPTIONS": {"memory_mb": 0}}, "workers.E104", "memory_mb must be"),
        ({"OPTIONS": ["timeout"]}, "workers.E104", "OPTIONS must be a dict"),
        ({"QUEUES": "default"}, "workers.E102", "QUEUES must be a list"),
        ({"QUEUES": ["default", ""]}, "workers.E103", "invalid queue names"),
        ({"QUEUES": ["sims"]}, "workers.W101", "does not include 'default'"),
    ],
)
@pytest.mark.django_db
def test_misconfiguration_is_reported(params: dict[str, Any], check_id: str, text: str) -> None:
    [(found_id, message)] = _messages(**params)
    assert found_id == check_id
    assert text in message


@pytest.mark.django_db
def test_the_workers_app_must_be_installed(settings: Any) -> None:
    apps = [app for app in settings.INSTALLED_APPS if app not in ("workers", "tests.testapp")]
    with override_settings(INSTALLED_APPS=apps):
        assert ("workers.E101", "TASKS['default'] uses CrucibleBackend, but the 'workers' app"
                " is not installed.") in _messages()

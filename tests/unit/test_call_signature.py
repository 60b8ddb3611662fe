"""A call that does not fit its function is refused when submitted, wherever it is submitted
(CLI, Django's enqueue, the admin's duplicate), not queued to fail on every attempt."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from tests.testapp import backend_tasks
from workers import queue
from workers.exceptions import CallMismatch, InvalidTaskSpec
from workers.models import Task
from workers.spec import TaskSpec, check_arguments
from workers.states import TaskState

pytestmark = pytest.mark.django_db

TASKS = "tests.testapp.tasks"


def enqueue(*args: str) -> str:
    out = StringIO()
    call_command("enqueue", *args, stdout=out)
    return out.getvalue().strip()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bench.tasks.stamp", "--args", "[1, 2]"],
         "args: do not match stamp(): too many positional arguments"),
        ([f"{TASKS}.add", "--args", "[1]"],
         "args: do not match add(a, b): missing a required argument: 'b'"),
        ([f"{TASKS}.add", "--args", "[1, 2]", "--kwargs", '{"c": 3}'],
         "kwargs: do not match add(a, b): got an unexpected keyword argument 'c'"),
        ([f"{TASKS}.add", "--args", "[1]", "--kwargs", '{"a": 3}'],
         "kwargs: do not match add(a, b): multiple values for argument 'a'"),
        ([f"{TASKS}.record", "--kwargs", '{"name": "x"}'],
         "kwargs: do not match record(key): missing a required argument: 'key'"),
    ],
)
def test_the_cli_refuses_a_call_the_function_cannot_take(crucible, args, message):
    with pytest.raises(CommandError) as refused:
        enqueue(*args)

    assert str(refused.value) == f"Refused: {message}"
    assert not Task.objects.exists(), "nothing is queued to fail three times"


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [([1, 2], {}), ([], {"a": 1, "b": 2}), ([1], {"b": 2})],
)
def test_a_call_that_fits_is_queued(crucible, args, kwargs):
    task = queue.enqueue(TaskSpec(func_path=f"{TASKS}.add", args=args, kwargs=kwargs))

    assert (task.state, task.args, task.kwargs) == (TaskState.QUEUED, args, kwargs)


def test_the_context_of_a_takes_context_task_is_not_the_callers_to_give(crucible):
    path = f"{backend_tasks.__name__}.with_context"
    check_arguments(path, ["k"], {})

    with pytest.raises(CallMismatch, match=r"with_context\(key\): too many positional"):
        check_arguments(path, ["context", "k"], {})


def test_a_task_exposed_under_another_name_is_checked_against_its_function(crucible):
    with pytest.raises(CallMismatch) as refused:
        queue.enqueue(TaskSpec(func_path="simulations.tasks.run_slab", kwargs={"n": 64}))

    assert refused.value.field == "kwargs"
    assert refused.value.message == (
        "do not match run_slab(simulation_id): missing a required argument: 'simulation_id'")
    assert isinstance(refused.value, InvalidTaskSpec)


def test_djangos_enqueue_raises_type_error_as_a_bad_call_would(crucible):
    with pytest.raises(TypeError, match=r"do not match add\(a, b\): missing a required"):
        backend_tasks.add.enqueue(1)  # type: ignore[call-arg]  # the wrong call on purpose

    assert not Task.objects.exists()


def test_the_admins_duplicate_refuses_a_copy_whose_call_no_longer_fits(crucible):
    # A row written before the check existed (or before the function changed signature).
    old = Task.objects.create(func_path=f"{TASKS}.add", args=[1], state=TaskState.FAILED,
                              timeout=60)
    client = Client()
    client.force_login(User.objects.create_superuser("admin", password="pw"))

    response = client.post("/admin/workers/task/", {
        "action": "duplicate_tasks", "_selected_action": [old.pk]}, follow=True)

    shown = [str(message) for message in response.context["messages"]]
    assert any("args: do not match add(a, b): missing a required argument: 'b'" in text
               for text in shown), shown
    assert list(Task.objects.values_list("pk", flat=True)) == [old.pk]

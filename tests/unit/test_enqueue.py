"""Enqueueing refuses what could never run, naming the problem, and writes nothing."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from workers.models import Task
from workers.states import TaskState

pytestmark = pytest.mark.django_db


def enqueue(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("enqueue", *args, stdout=out)
    return out.getvalue().strip()


def test_enqueue_prints_the_new_id_with_every_field(crucible):
    printed = enqueue(
        "tests.testapp.tasks.add", "--args", "[1, 2]", "--priority", "7", "--queue", "big",
        "--max-attempts", "5", "--timeout", "60", "--memory-mb", "2048",
        "--run-after", "2030-01-01T00:00:00+00:00",
    )
    task = Task.objects.get(pk=int(printed))
    assert (task.args, task.priority, task.queue, task.max_attempts) == ([1, 2], 7, "big", 5)
    assert (task.timeout, task.memory_mb, task.state) == (60.0, 2048, TaskState.QUEUED)
    assert task.run_after is not None and task.run_after.year == 2030


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tests.testapp.tasks.missing"], "cannot import 'tests.testapp.tasks.missing'"),
        (["nodots"], "'nodots' is not a dotted path"),
        (["tests.testapp.tasks.NOT_A_FUNCTION"], "is an int, not a function"),
        (["tests.testapp.models.Execution"], "not a function"),
        (["tests.testapp.tasks.add", "--priority", "101"], "priority: 101 is outside -100..100"),
        (["tests.testapp.tasks.add", "--max-attempts", "5000"],
         "max_attempts: 5000 is outside 1..1000"),
        (["tests.testapp.tasks.add", "--kwargs", "[1]"], "kwargs: must be a JSON object"),
        (["tests.testapp.tasks.add", "--run-after", "2030-01-01T00:00:00"],
         "run_after: must include a time zone"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(crucible, args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        enqueue(*args)
    assert not Task.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--args", "[1,"], "argument --args: not valid JSON"),
        (["--priority", "high"], "argument --priority: 'high' is not a whole number"),
        (["--timeout", "0"], "argument --timeout: must be greater than 0"),
        (["--max-attempts", "0"], "argument --max-attempts: 0 must be at least 1"),
        (["--memory-mb", "x"], "argument --memory-mb: 'x' is not a whole number"),
    ],
)
def test_malformed_options_are_refused_by_the_parser(crucible, args, message):
    with pytest.raises(CommandError, match=message):
        enqueue("tests.testapp.tasks.add", *args)
    assert not Task.objects.exists()

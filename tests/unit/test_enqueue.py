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
        (["tests.testapp.unimportable.run"], "cannot import 'tests.testapp.unimportable.run':"
                                             " RuntimeError: this module fails on import"),
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


# --- many calls at once: --calls FILE ---


def test_calls_from_a_file_queue_one_task_a_line_with_the_shared_options(crucible, tmp_path):
    calls = tmp_path / "calls.jsonl"
    calls.write_text('[1, 2]\n\n{"args": [3], "kwargs": {"b": 4}}\n[5, 6]\n')
    printed = enqueue("tests.testapp.tasks.add", "--calls", str(calls), "--queue", "sims",
                      "--priority", "3")
    tasks = list(Task.objects.order_by("pk"))
    assert printed == f"3 tasks queued: ids {tasks[0].pk}..{tasks[-1].pk}"
    assert [(t.args, t.kwargs) for t in tasks] == [([1, 2], {}), ([3], {"b": 4}), ([5, 6], {})]
    assert {(t.queue, t.priority, t.state) for t in tasks} == {("sims", 3, TaskState.QUEUED)}


@pytest.mark.parametrize(("lines", "message"), [
    ("[1, 2]\nnot json\n", "--calls line 2: not JSON"),
    ('[1, 2]\n{"argz": [1]}\n', "--calls line 2: must be a JSON array of arguments"),
    ('{"args": {"a": 1}}\n', "--calls line 1: must be a JSON array"),
    ("\n\n", "holds no calls"),
    ("[1, 2]\n[1, 2, 3, 4]\n", "Refused, nothing queued: tasks[1].args"),
])
def test_bad_calls_are_refused_naming_the_line_or_task_and_nothing_is_queued(
        crucible, tmp_path, lines, message):
    calls = tmp_path / "calls.jsonl"
    calls.write_text(lines)
    with pytest.raises(CommandError, match=message.replace("[", r"\[").replace("]", r"\]")):
        enqueue("tests.testapp.tasks.add", "--calls", str(calls))
    assert Task.objects.count() == 0


def test_calls_with_args_too_are_refused(crucible, tmp_path):
    calls = tmp_path / "calls.jsonl"
    calls.write_text("[1, 2]\n")
    with pytest.raises(CommandError, match="leave out --args and --kwargs"):
        enqueue("tests.testapp.tasks.add", "--calls", str(calls), "--args", "[1]")
    with pytest.raises(CommandError, match="cannot read"):
        enqueue("tests.testapp.tasks.add", "--calls", str(tmp_path / "missing.jsonl"))
    assert Task.objects.count() == 0


def test_calls_are_read_from_standard_input_with_a_dash(crucible, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("[1, 2]\n[3, 4]\n"))
    printed = enqueue("tests.testapp.tasks.add", "--calls", "-")
    assert printed.startswith("2 tasks queued")
    assert [task.args for task in Task.objects.order_by("pk")] == [[1, 2], [3, 4]]

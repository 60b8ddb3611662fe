"""Django's lines about a ``@task``'s attempt, on their way from the executor.

The line that starts an attempt goes to the supervisor at once, as its own message, so
that a long task shows in the worker's log while it runs. For a function whose last run in
this executor was short it rides in the reply with the others: its own message woke the
supervisor once more for every short task. Here the executor's ``_run`` runs in the test's
process, on a real pipe, with a real ``@task``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from multiprocessing.connection import Connection, Pipe
from typing import Any

import pytest

from workers.runtime import djangolog, executor

pytestmark = pytest.mark.django_db

SHORT = "tests.testapp.backend_tasks.add"
LONG = "tests.testapp.backend_tasks.too_slow"  # sleeps its argument


@pytest.fixture
def pipe(crucible: Any) -> Iterator[tuple[Connection, Connection]]:
    ours, theirs = Pipe()
    found = logging.getLogger(djangolog.LOGGER)
    propagate, level = found.propagate, found.level
    djangolog.install(theirs)  # as the executor does
    found.setLevel(logging.INFO)
    yield ours, theirs
    djangolog.uninstall()
    found.propagate = propagate
    found.setLevel(level)
    ours.close()
    theirs.close()


def message(task_id: int, func_path: str, *args: Any) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {"task": {"id": task_id, "attempt": 1, "worker_id": 1, "func_path": func_path,
                     "args": list(args), "kwargs": {},
                     "row": {"priority": 0, "queue": "default", "created_at": now,
                             "started_at": now, "last_attempted_at": now}}}


def run(pipe: tuple[Connection, Connection], state: Any, task_id: int, func_path: str,
        *args: Any) -> tuple[list[str], list[str]]:
    """(the lines sent while it ran, the lines in its reply)."""
    ours, theirs = pipe
    reply = executor._run(theirs, message(task_id, func_path, *args), state)
    sent = []
    while ours.poll():
        sent += [text for _, text in ours.recv()["log"]]
    return sent, [text for _, text in reply["log"]]


def test_a_short_tasks_start_line_rides_in_its_reply_after_its_first_run(pipe, monkeypatch):
    monkeypatch.setattr(executor, "SHORT_TASK", 10.0)  # short even on a busy machine
    state = executor._Between(base_rss=0)

    first_sent, first_reply = run(pipe, state, 1, SHORT, 1, 2)
    then_sent, then_reply = run(pipe, state, 2, SHORT, 3, 4)

    assert [line.split(" path=")[0] for line in first_sent] == ["Task id=1"], "at once"
    assert "state=SUCCESSFUL" in first_reply[0]
    assert then_sent == [], "no message of its own"
    assert [line.rpartition("state=")[2] for line in then_reply] == ["RUNNING", "SUCCESSFUL"]


def test_a_function_whose_last_run_was_long_sends_its_start_line_at_once(pipe, monkeypatch):
    monkeypatch.setattr(executor, "SHORT_TASK", 0.05)
    state = executor._Between(base_rss=0)
    state.short.add(LONG)  # its last run was short: its next start line would ride along
    run(pipe, state, 2, LONG, 0.1)  # long

    sent, reply = run(pipe, state, 3, LONG, 0.0)

    assert len(sent) == 1 and "state=RUNNING" in sent[0]
    assert len(reply) == 1 and "state=SUCCESSFUL" in reply[0]


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.texts.append(record.getMessage())


def test_the_lines_the_executor_makes_itself_are_djangos_own(crucible):
    """While the relay is the only handler of ``django.tasks``, the executor writes the
    lines of a successful attempt without Django's receivers: the same words."""
    from django.tasks import TaskResultStatus, signals

    from tests.testapp import backend_tasks

    result = backend_tasks.add.enqueue(1, 2)
    found = logging.getLogger(djangolog.LOGGER)
    djangos = Lines()
    found.addHandler(djangos)
    level = found.level
    found.setLevel(logging.INFO)
    try:
        for status, receiver in ((TaskResultStatus.RUNNING, signals.log_task_started),
                                 (TaskResultStatus.SUCCESSFUL, signals.log_task_finished)):
            object.__setattr__(result, "status", status)
            receiver(type(result.task.get_backend()), task_result=result)
            assert djangolog._text(result) == djangos.texts[-1]
            assert djangos.texts[-1].endswith(f"state={status.value}")
    finally:
        found.removeHandler(djangos)
        found.setLevel(level)


def test_djangos_receivers_stay_while_another_handler_listens(crucible):
    from django.tasks import signals

    found = logging.getLogger(djangolog.LOGGER)
    other = Lines()
    found.addHandler(other)
    ours, theirs = Pipe()
    try:
        djangolog.install(theirs)
        assert signals.log_task_started in [ref() for _, ref, *_ in signals.task_started.receivers]
        assert djangolog._started not in [ref() for _, ref, *_ in signals.task_started.receivers]
    finally:
        djangolog.uninstall()
        found.removeHandler(other)
        ours.close()
        theirs.close()


def test_the_executor_replaces_djangos_receivers_when_only_the_relay_listens(crucible):
    from django.tasks import signals

    found = logging.getLogger(djangolog.LOGGER)
    level = found.level
    found.setLevel(logging.INFO)
    ours, theirs = Pipe()
    try:
        djangolog.install(theirs)
        started = [ref() for _, ref, *_ in signals.task_started.receivers]
        finished = [ref() for _, ref, *_ in signals.task_finished.receivers]
        assert djangolog._started in started and signals.log_task_started not in started
        assert djangolog._finished in finished and signals.log_task_finished not in finished
    finally:
        djangolog.uninstall()
        found.setLevel(level)
        ours.close()
        theirs.close()
    restored = [ref() for _, ref, *_ in signals.task_started.receivers]
    assert signals.log_task_started in restored and djangolog._started not in restored

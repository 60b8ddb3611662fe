"""Django's own lines about a ``@task``'s attempt ("Task id=7 path=... state=RUNNING", then
SUCCESSFUL or FAILED), logged by its ``django.tasks`` logger in the executor.

They belong in the worker's log, not in the attempt's output, which holds what the task
itself wrote: the executor hands them to the supervisor as messages, which logs them under
the same logger. A no-op ``@task`` then writes no attempt log at all, and the supervisor
reads no output pipe for it. The line that starts an attempt is sent at once, unless the
function's last run in this executor was short (``executor.SHORT_TASK``): then it rides
in the attempt's reply with the ones after the task's body has ended.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from django.tasks import TaskResult, TaskResultStatus, signals

LOGGER = "django.tasks"
type Line = tuple[int, str]  # (level, text)
type Receiver = Callable[..., None]


class Relay(logging.Handler):
    """The executor's handler of ``django.tasks``: each record formatted, then sent to the
    supervisor (``{"log": [...]}``), or held while ``holding`` for the attempt's reply."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))  # with a traceback, if any
        self.conn: Connection | None = None
        self.holding = False
        self.held: list[Line] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.line(record.levelno, self.format(record))

    def line(self, level: int, text: str) -> None:
        if self.holding or self.conn is None:
            self.held.append((level, text))
        else:
            self.conn.send({"log": [(level, text)]})

    def take(self) -> list[Line]:
        """The lines held since the task's body ended; sending resumes."""
        lines, self.held, self.holding = self.held, [], False
        return lines


relay = Relay()


def install(conn: Connection) -> None:
    """In the executor: ``django.tasks`` goes to the supervisor, not to the task's output."""
    relay.conn = conn
    found = logging.getLogger(LOGGER)
    found.addHandler(relay)
    found.propagate = False
    if found.handlers == [relay] and not found.filters and found.isEnabledFor(logging.INFO):
        _swap(DJANGOS, OURS)


def uninstall() -> None:
    """Undo ``install`` (for tests, which run it in their own process)."""
    found = logging.getLogger(LOGGER)
    found.removeHandler(relay)
    found.propagate, relay.conn = True, None
    _swap(OURS, DJANGOS)


def _swap(old: tuple[Receiver, Receiver], new: tuple[Receiver, Receiver]) -> None:
    """Connect ``new``'s receivers of task_started and task_finished in ``old``'s place."""
    for signal, before, after in zip((signals.task_started, signals.task_finished), old, new,
                                     strict=True):
        if signal.disconnect(before):
            signal.connect(after)


# While the relay is the only way out of ``django.tasks``, Django's two lines about a
# successful attempt are made here, the same text at the same level, without a record of
# logging's each: they were a quarter of the CPU a no-op @task took (its executor's and
# its supervisor's). A failure's line, with its traceback, is still Django's own.

def _text(task_result: TaskResult[..., Any]) -> str:
    return "Task id=%s path=%s state=%s" % (  # noqa: UP031 - Django's words, as it formats them
        task_result.id, task_result.task.module_path, task_result.status)


def _started(sender: type, task_result: TaskResult[..., Any], **kwargs: Any) -> None:
    relay.line(logging.INFO, _text(task_result))


def _finished(sender: type, task_result: TaskResult[..., Any], **kwargs: Any) -> None:
    if task_result.status == TaskResultStatus.FAILED:
        signals.log_task_finished(sender, task_result=task_result, **kwargs)
    else:
        relay.line(logging.INFO, _text(task_result))


DJANGOS: tuple[Receiver, Receiver] = (signals.log_task_started, signals.log_task_finished)
OURS: tuple[Receiver, Receiver] = (_started, _finished)


def log(lines: list[Line]) -> None:
    """In the supervisor: the executor's lines, in the worker's log. Their records say
    no source file or line: the line was written in the executor, and looking up the
    supervisor's own would cost a fifth of logging it."""
    found = logging.getLogger(LOGGER)
    for level, text in lines:
        if found.isEnabledFor(level):
            found.handle(found.makeRecord(LOGGER, level, "(executor)", 0, "%s", (text,), None))

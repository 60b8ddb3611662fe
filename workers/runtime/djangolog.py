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
from multiprocessing.connection import Connection

LOGGER = "django.tasks"
type Line = tuple[int, str]  # (level, text)


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
        line = (record.levelno, self.format(record))
        if self.holding or self.conn is None:
            self.held.append(line)
        else:
            self.conn.send({"log": [line]})

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


def log(lines: list[Line]) -> None:
    """In the supervisor: the executor's lines, in the worker's log."""
    found = logging.getLogger(LOGGER)
    for level, text in lines:
        found.log(level, "%s", text)

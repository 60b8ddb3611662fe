"""Benchmark tasks for huey, through its Django integration (djhuey)."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from huey.contrib.djhuey import signal, task
from huey.signals import SIGNAL_COMPLETE, SIGNAL_ERROR

from peerbench.stamp import append_line, record_start


@task()
def noop() -> None:
    """Do nothing: measures the queue's own overhead."""


@task()
def stamp(sample: int) -> None:
    """Record when this task started, for the pickup-latency measurement."""
    record_start(sample)


def _append_done(outcome: str) -> None:
    append_line(settings.DONE_FILE, f"{outcome} {time.time()!r}")


@signal(SIGNAL_COMPLETE)
def count_done(signal_name: str, huey_task: Any, *args: Any, **kwargs: Any) -> None:
    """Append "ok <time.time()>" per finished task: huey keeps no record of a task that
    returned None (its default `store_none=False`), so this is how the drain is counted.
    One O_APPEND write in the consumer's worker process, after the task."""
    _append_done("ok")


@signal(SIGNAL_ERROR)
def count_error(signal_name: str, huey_task: Any, *args: Any, **kwargs: Any) -> None:
    """Append "error <time.time()>" per task that raised: it counts as finished too."""
    _append_done("error")

"""Crucible's side of bench/peers/run.py: the same two tasks every peer runs, once as
Django `@task` functions (enqueued with `.enqueue()`) and once as plain functions
(enqueued by dotted path, as `manage.py enqueue` does).

`stamp` appends "<sample> <time.time()>" to the file it is given, in one O_APPEND write,
the moment its body starts: the pickup latency is read from that file, as for the peers
(bench/peers/project/peerbench/stamp.py).
"""

from __future__ import annotations

import os
import time

from django.tasks import task


def _record_start(sample: int, path: str) -> None:
    line = f"{sample} {time.time()!r}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@task
def noop() -> None:
    """Do nothing: measures the queue's own overhead."""


@task
def stamp(sample: int, path: str) -> None:
    """Record when this task started, for the pickup-latency measurement."""
    _record_start(sample, path)


def plain_stamp(sample: int, path: str) -> None:
    """`stamp` as a plain function (the plain no-op is bench.tasks.noop, as in bench/core.py)."""
    _record_start(sample, path)

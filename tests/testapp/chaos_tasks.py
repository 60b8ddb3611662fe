"""Task functions of the chaos suite.

Each execution leaves a Span row (start, last sign of life, end) so that tests can tell
whether two executions of one task overlapped in time; ``journaled`` writes the same to a
file, for tests that cut the database off. The poison tasks produce what a database
refuses (NUL bytes, lone surrogates) through every channel a task has.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from workers import conf
from workers.context import current
from workers.models import Worker

from .models import Span

BEAT = 0.1  # seconds between two signs of life


def _begin(key: str) -> Span:
    ctx = current()
    now = time.time()
    return Span.objects.create(key=key, task_id=ctx.task_id, attempt=ctx.attempt,
                               worker_id=ctx.worker_id, pid=os.getpid(), started=now, seen=now)


def _touch(span: Span) -> None:
    span.seen = time.time()
    Span.objects.filter(pk=span.pk).update(seen=span.seen)


def _finish(span: Span) -> None:
    now = time.time()
    Span.objects.filter(pk=span.pk).update(seen=now, ended=now)


def short(key: str, seconds: float) -> str:
    span = _begin(key)
    if seconds:
        time.sleep(seconds)
    _finish(span)
    return key


def lively(key: str, first_seconds: float, later_seconds: float) -> str:
    """Show life every BEAT: for ``first_seconds`` on attempt 1, ``later_seconds`` after."""
    span = _begin(key)
    seconds = first_seconds if current().attempt == 1 else later_seconds
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        time.sleep(BEAT)
        _touch(span)
    _finish(span)
    return f"{key} done"


def gated(key: str, gate: str, limit: float) -> str:
    """Show life every BEAT until the file ``gate`` exists (at most ``limit`` seconds)."""
    span = _begin(key)
    until = time.monotonic() + limit
    while not Path(gate).exists() and time.monotonic() < until:
        time.sleep(BEAT)
        _touch(span)
    _finish(span)
    return f"{key} done"


def journaled(folder: str, first_seconds: float, later_seconds: float) -> str:
    """Like ``lively``, but journal to a file: the database may be out of reach.

    One file per execution, ``<task>-<attempt>-<worker>-<pid>.log``, with lines
    ``start|seen|end <time>``; a line cut short by a kill is ignored by the reader.
    """
    ctx = current()
    name = f"{ctx.task_id}-{ctx.attempt}-{ctx.worker_id}-{os.getpid()}.log"
    seconds = first_seconds if ctx.attempt == 1 else later_seconds
    with (Path(folder) / name).open("a", buffering=1) as journal:
        journal.write(f"start {time.time()!r}\n")
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            time.sleep(BEAT)
            journal.write(f"seen {time.time()!r}\n")
        journal.write(f"end {time.time()!r}\n")
    return "journaled"


# -- poison: data the database cannot store ------------------------------------------------


def print_nul_and_fail() -> None:
    print("before a NUL byte: \x00 :after it", flush=True)
    raise RuntimeError("failed after printing a NUL byte")


def raise_nul() -> None:
    raise ValueError("a\x00b")


def raise_surrogate() -> None:
    raise ValueError("a\ud800b")


def return_nul() -> dict[str, str]:
    return {"s": "a\x00b"}


def return_surrogate() -> str:
    return "\ud800"


def progress_nul() -> str:
    current().progress(0.5, "\x00")
    return "progressed"


def print_nul_then_kill_worker() -> None:
    """Print a NUL byte, let it reach the worker's log, then SIGKILL the worker process."""
    ctx = current()
    print("about to take my worker down: \x00", flush=True)
    log = conf.get().log_dir / f"worker_{ctx.worker_id}.log"
    until = time.monotonic() + 5.0
    while time.monotonic() < until and not _holds_nul(log):
        time.sleep(0.05)
    pid = Worker.objects.values_list("pid", flat=True).get(pk=ctx.worker_id)
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    time.sleep(30)  # the executor dies with its worker


def _holds_nul(path: Path) -> bool:
    try:
        return b"\x00" in path.read_bytes()
    except FileNotFoundError:
        return False

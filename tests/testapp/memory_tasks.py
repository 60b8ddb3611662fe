"""Tasks that really allocate memory (every byte written, so every page is resident)."""

from __future__ import annotations

import os
import time

from workers.context import current

from .models import Execution

MB = 1024 * 1024
_leaked: list[bytearray] = []  # module globals outlive the task in a reused executor


def filled(mb: int) -> bytearray:
    """``mb`` megabytes, every byte written (bytearray(n) alone maps zero pages lazily)."""
    return bytearray(b"\x01") * (mb * MB)


def own_rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _record(key: str) -> None:
    ctx = current()
    Execution.objects.create(key=key, task_id=ctx.task_id, attempt=ctx.attempt,
                             pid=os.getpid(), at=time.time())


def leak(mb: int) -> int:
    """Keep ``mb`` MB in a module global after returning."""
    _record("leak")
    _leaked.append(filled(mb))
    return mb


def small() -> int:
    _record("small")
    return 1


def hold(mb: int, seconds: float = 0.0) -> int:
    """Allocate ``mb`` MB, keep it ``seconds``, return (the memory goes with the task)."""
    _record(f"hold {mb}")
    block = filled(mb)
    time.sleep(seconds)
    return len(block) // MB


def hold_units(units: int) -> int:
    """A task whose memory grows with a size it names: one MB per unit."""
    block = filled(units)
    return len(block) // MB


def grow(step_mb: int, steps_file: str) -> None:
    """Grow ``step_mb`` at a time without end; after each step append the wall time and
    this process's size to ``steps_file`` (one line each)."""
    blocks = []
    with open(steps_file, "a") as steps:
        while True:
            blocks.append(filled(step_mb))
            steps.write(f"{time.time()!r} {own_rss()}\n")
            steps.flush()
            time.sleep(0.01)

"""Tasks that really take the memory they declare: every page written, held for a while."""

from __future__ import annotations

import time
from pathlib import Path

from .tasks import _record

MB = 1024 * 1024


def _touch(mb: int) -> bytes:
    # bytes * n fills every byte: the pages are resident, not lazily zero-mapped.
    return b"\x01" * (mb * MB)


def hold(mb: int, seconds: float) -> int:
    """Hold ``mb`` megabytes for ``seconds``; ``start``/``end`` executions bracket it (the
    time its memory may be in use lies between them)."""
    _record("start")
    data = _touch(mb)
    time.sleep(seconds)
    held = len(data) // MB
    del data
    _record("end")
    return held


def hold_until(mb: int, path: str, timeout: float = 120.0) -> int:
    """Hold ``mb`` megabytes until the test creates ``path``."""
    _record("start")
    data = _touch(mb)
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.05)
    return len(data) // MB

"""Task functions the benchmarks enqueue."""

from __future__ import annotations

import time


def noop() -> None:
    return None


def stamp() -> float:
    """Return when the task body started, to measure pickup latency."""
    return time.time()

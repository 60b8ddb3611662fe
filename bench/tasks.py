"""Task functions the benchmarks enqueue."""

from __future__ import annotations

import time


def noop() -> None:
    return None


def stamp() -> float:
    """Return when the task body started, to measure pickup latency."""
    return time.time()


def numpy_sum() -> float:
    """A task that needs numpy: an executor that has not imported it yet pays for that."""
    import numpy as np

    return float(np.arange(1000.0).sum())

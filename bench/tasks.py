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


def allocate(mb: int, seconds: float = 1.0, noise: float = 0.0) -> int:
    """Hold ``mb`` MB times ``1 + noise`` (every byte written) for ``seconds``."""
    block = bytearray(b"\x01") * int(mb * (1 + noise) * 1024 * 1024)
    time.sleep(seconds)
    return len(block) // (1024 * 1024)


def hold(mb: int, seconds: float = 1.0) -> int:
    """Hold ``mb`` MB (every byte written) until ``seconds`` after the call began: the
    task lasts ``seconds``, writing its memory included (unless writing takes longer)."""
    began = time.monotonic()
    block = bytearray(b"\x01") * int(mb * 1024 * 1024)
    time.sleep(max(0.0, seconds - (time.monotonic() - began)))
    return len(block) // (1024 * 1024)


def chatter(seconds: float = 30.0, every: float = 0.5) -> int:
    """Print a numbered line and report progress every ``every`` seconds for ``seconds``: a
    task to watch a log stream and a progress bar (with its ETA) on a task's page."""
    from workers.context import current

    lines = max(1, round(seconds / every))
    for n in range(1, lines + 1):
        print(f"line {n} of {lines}", flush=True)
        current().progress(n / lines, f"line {n} of {lines}")
        time.sleep(every)
    return lines

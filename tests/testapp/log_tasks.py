"""Tasks that print, for the tests of per-attempt logs."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def print_lines(tag: str, count: int, width: int = 0) -> int:
    """Print ``count`` numbered lines, each padded with ``width`` words."""
    for number in range(count):
        print(f"{tag} line {number}" + " word" * width, flush=True)
    return count


def print_then_fail(tag: str, count: int, width: int = 0) -> None:
    print_lines(tag, count, width)
    raise ValueError(f"{tag} failed on purpose")


def fail_silently() -> None:
    raise ValueError("failed without a word")


def print_until(tag: str, stop_file: str, every: float = 0.2) -> int:
    """Print a numbered line (stdout, stderr and logging in turn) until ``stop_file`` exists."""
    number = 0
    while not Path(stop_file).exists():
        text = f"{tag} line {number}"
        if number % 3 == 1:
            print(text, file=sys.stderr, flush=True)
        elif number % 3 == 2:
            logger.warning("%s", text)
        else:
            print(text, flush=True)
        number += 1
        time.sleep(every)
    print(f"{tag} done after {number} lines", flush=True)
    return number

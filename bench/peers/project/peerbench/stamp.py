"""How a benchmark task records the moment it started running."""

from __future__ import annotations

import os
import time

from django.conf import settings


def record_start(sample: int) -> None:
    """Append "<sample> <time.time()>" to the stamp file in one O_APPEND write."""
    append_line(settings.STAMP_FILE, f"{sample} {time.time()!r}")


def append_line(path: str, text: str) -> None:
    """One O_APPEND write of ``text`` and a newline: whole lines from many processes."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{text}\n".encode())
    finally:
        os.close(fd)

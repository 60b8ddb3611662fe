"""How a benchmark task records the moment it started running."""

from __future__ import annotations

import os
import time

from django.conf import settings


def record_start(sample: int) -> None:
    """Append "<sample> <time.time()>" to the stamp file in one O_APPEND write."""
    started = time.time()
    line = f"{sample} {started!r}\n".encode()
    fd = os.open(settings.STAMP_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)

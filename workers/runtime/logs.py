"""Each worker logs to WORKER_LOG_DIR/worker_<id>.log, rotated at 10 MB with 3 backups."""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 3
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def log_path(log_dir: Path, worker_id: int) -> Path:
    return log_dir / f"worker_{worker_id}.log"


def to_file(log_dir: Path, worker_id: int, *, keep_console: bool) -> Path:
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_path(log_dir, worker_id)
    handler = RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    if not keep_console:
        for old in list(root.handlers):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return path


def tail(path: Path, chars: int = 1000) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(handle.tell() - chars * 4, 0))
            return handle.read().decode(errors="replace")[-chars:]
    except OSError:
        return ""

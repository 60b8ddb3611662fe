"""Each worker logs to WORKER_LOG_DIR/worker_<id>.log, rotated at 10 MB with 3 backups.

Each attempt of a task also gets a file of its own, holding only that attempt's output:
WORKER_LOG_DIR/tasks/<task id // 1000>/<task id>/attempt_<number>.log. The pair (task,
attempt) is unique across nodes, so the path needs no database column; the folders of a
thousand tasks each let a sweep take them a thousand at a time.
"""

from __future__ import annotations

import atexit
import functools
import io
import logging
import os
import sys
import time
from collections.abc import Callable
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import BinaryIO

MAX_BYTES = 10 * 1024 * 1024
BACKUPS = 3
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
TASKS_DIR = "tasks"
SHARD = 1000  # tasks per folder of WORKER_LOG_DIR/tasks
ATTEMPT_MAX_BYTES = 50 * 1024 * 1024  # then rotated once: an attempt keeps its last 50-100 MB
ELLIPSIS = "\u2026"

logger = logging.getLogger(__name__)


def log_path(log_dir: Path, worker_id: int) -> Path:
    return log_dir / f"worker_{worker_id}.log"


def rotated_paths(log_dir: Path, worker_id: int) -> list[Path]:
    """The worker's log files that exist, oldest first (backups, then the current one)."""
    current = log_path(log_dir, worker_id)
    backups = [current.with_name(f"{current.name}.{n}") for n in range(BACKUPS, 0, -1)]
    return [path for path in [*backups, current] if path.is_file()]


def shard_dir(log_dir: Path, shard: int) -> Path:
    return log_dir / TASKS_DIR / str(shard)


def task_log_dir(log_dir: Path, task_id: int) -> Path:
    return shard_dir(log_dir, task_id // SHARD) / str(task_id)


def attempt_log_path(log_dir: Path, task_id: int, attempt: int) -> Path:
    return task_log_dir(log_dir, task_id) / f"attempt_{attempt}.log"


def backup_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.1")


class LineFormatter(logging.Formatter):
    """The worker's format, shared by its log file and its console: a record is formatted
    once for both, and the time's seconds once a second."""

    def __init__(self) -> None:
        super().__init__(FORMAT)
        self._last: tuple[logging.LogRecord | None, str] = (None, "")
        self._second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        last, text = self._last
        if last is not record:
            text = super().format(record)
            self._last = (record, text)
        return text

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second, stamp = self._second
        if second != int(record.created):
            stamp = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = (int(record.created), stamp)
        msec = self.default_msec_format
        return msec % (stamp, record.msecs) if msec else stamp


class WorkerLog(RotatingFileHandler):
    """The worker's own log: rotated like its base, but each line formatted once (the base
    formats it again to decide on rotation, and asks the file where it is, which writes
    it out) and written out when the worker's loop waits (``flush_pending``), not line by
    line: a busy worker logs two of Django's lines a ``@task``."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, maxBytes=MAX_BYTES, backupCount=BACKUPS)
        self.size = path.stat().st_size if path.exists() else 0
        self.pending = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + self.terminator
            if self.size and self.size + len(text) >= self.maxBytes:  # characters: near enough
                self.doRollover()
                self.size = 0
            if self.stream is None:
                self.stream = self._open()
            self.stream.write(text)
            self.size += len(text)
            self.pending = True
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - as logging's own handlers: report, never raise
            self.handleError(record)

    def flush(self) -> None:
        self.pending = False
        super().flush()

    def write_out(self) -> None:
        if self.pending:
            self.flush()


CONSOLE_BUFFER = 64 * 1024
_held: list[WorkerLog | _HeldText] = []  # what holds lines until the loop waits


def flush_pending() -> None:
    """Write out the worker's log lines not yet written (before its loop waits, and before
    a fork, so that no child inherits them)."""
    for held in _held:
        held.write_out()  # no system call when nothing is held


@functools.cache
def _flush_before_forks_and_exit() -> None:
    os.register_at_fork(before=flush_pending)
    atexit.register(flush_pending)  # before logging's own shutdown, which runs last


class _HeldText(io.TextIOWrapper):
    """A console stream whose lines are written out by ``flush_pending``, not by the
    ``flush`` that logging's StreamHandler calls after every line."""

    def flush(self) -> None:
        pass

    def write_out(self) -> None:
        super().flush()


def _buffer_consoles(root: logging.Logger, formatter: LineFormatter) -> None:
    """The console handlers of a worker started by hand write when its loop waits, as its
    log file does: a system call for each of Django's two lines a ``@task`` otherwise. One
    in the worker's own format shares the log file's formatter."""
    for handler in root.handlers:
        if type(handler) is not logging.StreamHandler or handler.stream is not sys.stderr:
            continue
        if _formats_as(handler.formatter, FORMAT):
            handler.setFormatter(formatter)
        try:
            fd = sys.stderr.fileno()
        except (AttributeError, OSError):  # io.UnsupportedOperation: stderr is no file here
            continue
        raw = io.FileIO(fd, "w", closefd=False)
        held = _HeldText(io.BufferedWriter(raw, CONSOLE_BUFFER),
                         encoding=sys.stderr.encoding, errors="backslashreplace")
        handler.setStream(held)
        _held.append(held)


def _formats_as(formatter: logging.Formatter | None, fmt: str) -> bool:
    """Whether ``formatter`` is logging's own, with ``fmt`` and its default time format."""
    return (type(formatter) is logging.Formatter and formatter._fmt == fmt
            and formatter.datefmt is None and isinstance(formatter._style, logging.PercentStyle))


def to_file(log_dir: Path, worker_id: int, *, keep_console: bool) -> Path:
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_path(log_dir, worker_id)
    handler = WorkerLog(path)
    _held.append(handler)
    root = logging.getLogger()
    if not keep_console:
        for old in list(root.handlers):
            root.removeHandler(old)
    formatter = LineFormatter()
    handler.setFormatter(formatter)
    _buffer_consoles(root, formatter)
    _flush_before_forks_and_exit()
    root.addHandler(handler)
    root.setLevel(min(root.getEffectiveLevel(), logging.INFO))  # LOG_LEVEL=DEBUG is kept
    return path


def clip(text: str, chars: int, *, cut: bool = False) -> str:
    """The last whole lines of ``text`` that fit in ``chars`` characters.

    ``cut``: the text itself starts somewhere in a line (read from the middle of a file).
    A last line longer than ``chars`` starts at a word, after an ellipsis.
    """
    if len(text) > chars:
        if text[-chars - 1] == "\n":
            return text[-chars:]
        text, cut = text[-chars:], True
    if not cut:
        return text
    newline = text.find("\n")
    if 0 <= newline < len(text.rstrip("\n")):  # a whole line starts inside the text
        return text[newline + 1:]
    space = text.find(" ")  # one line, longer than what is kept: start at a word
    if 0 <= space < len(text) // 2:
        text = text[space + 1:]
    return ELLIPSIS + text[-(chars - 1):]


def tail(path: Path, chars: int = 1000) -> str:
    """The last whole lines of a log file, at most ``chars`` characters ("" if unreadable)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            start = max(size - chars * 4, 0)
            handle.seek(start)
            data = handle.read()
    except OSError:
        return ""
    return clip(data.decode(errors="replace"), chars, cut=start > 0)


class AttemptLog:
    """One attempt's own output, appended as it comes; a failing disk never stops a task.

    The file is made at the first byte: an attempt that prints nothing costs no file and
    no folder (a busy worker runs a thousand such tasks a second). Past ``max_bytes`` the
    file becomes ``<name>.1`` (replacing an older one) and a new one starts, like the
    worker's log: a task that prints without end cannot fill the disk.
    """

    def __init__(self, path: Path | Callable[[], Path], max_bytes: int = ATTEMPT_MAX_BYTES) -> None:
        self._where = path if callable(path) else functools.partial(Path, path)
        self.max_bytes = max_bytes
        self.size = 0
        self.handle: BinaryIO | None = None
        self.ended = False  # closed, or the disk refused once: write no more

    @functools.cached_property
    def path(self) -> Path:
        """Worked out at the first byte (or the first look): most attempts print nothing."""
        return self._where()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("ab", buffering=0)
        self.size = self.handle.tell()

    def write(self, data: bytes) -> None:
        if self.ended or not data:
            return
        try:
            if self.handle is None:
                self._open()
            elif self.size and self.size + len(data) > self.max_bytes:
                self._rotate()
            assert self.handle is not None
            self.handle.write(data)
            self.size += len(data)
        except OSError as exc:
            logger.warning("cannot write the attempt's log %s: %s", self.path, exc)
            self.close()

    def _rotate(self) -> None:
        self._close_file()
        self.path.replace(backup_path(self.path))
        self._open()

    def close(self) -> None:
        self.ended = True
        self._close_file()

    def _close_file(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            try:
                handle.close()
            except OSError as exc:
                logger.warning("could not close the attempt's log %s: %s", self.path, exc)

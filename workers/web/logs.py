"""Logs as an operator reads them: one attempt's own log, a worker's log.

Each is a file on the machine that ran it (see :mod:`workers.runtime.logs`). A page shows
the last whole lines and then follows the file from a byte offset while it is still being
written; a download sends the whole of it. A log that is not on this machine (another
node ran it, or retention removed it) falls back to the tail the database kept.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import conf
from ..exceptions import CrucibleError
from ..models import Task, TaskAttempt, Worker
from ..runtime import logs as files
from ..states import ACTIVE_WORKER_STATES, TaskState

PAGE_BYTES = 64 * 1024  # what a page shows at first, and at most per poll
READ_BYTES = 256 * 1024  # a download's chunk
SWEPT = "swept"  # in WORKER_LOG_DIR/tasks: the folder the last sweep took


class LogNotFound(CrucibleError):
    """The log asked for is not on this machine."""


@dataclass(frozen=True, slots=True)
class Chunk:
    text: str
    offset: int  # where the next read of the file starts


@dataclass(frozen=True, slots=True)
class LogView:
    """What a page shows of one log, and whether it keeps following it."""

    label: str
    chunk: Chunk
    live: bool  # still written to: the page polls for more
    on_disk: bool  # the whole log can be downloaded
    note: str = ""
    attempt: int | None = None


# --- Reading files ---


def tail_chunk(path: Path, *, live: bool, limit: int = PAGE_BYTES) -> Chunk:
    """The last whole lines of a file within ``limit`` bytes, and the offset after them.

    While the file is written to (``live``), a last line without its newline is left for
    the next read, so that a line (and a character) is never shown in two pieces.
    """
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            start = max(size - limit, 0)
            handle.seek(start)
            data = handle.read(size - start)
    except OSError:
        return Chunk("", 0)
    if start > 0 and b"\n" in data:
        skip = data.index(b"\n") + 1
        data, start = data[skip:], start + skip
    data = _whole_lines(data, live, limit)
    return Chunk(data.decode(errors="replace"), start + len(data))


def read_from(path: Path, offset: int, *, live: bool, limit: int = PAGE_BYTES) -> Chunk:
    """What was written to a file after ``offset``; from the start again if it was rotated."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            if offset > size:  # rotated (or truncated): the new file starts over
                offset = 0
            handle.seek(offset)
            data = handle.read(limit)
    except OSError:
        return Chunk("", offset)
    data = _whole_lines(data, live, limit)
    return Chunk(data.decode(errors="replace"), offset + len(data))


def _whole_lines(data: bytes, live: bool, limit: int) -> bytes:
    if not live or len(data) >= limit:  # a line longer than a page is shown in pieces
        return data
    return data[: data.rfind(b"\n") + 1]


def stream(paths: Iterable[Path]) -> Iterator[bytes]:
    """The files' bytes one after another, in chunks (a download of any size)."""
    for path in paths:
        try:
            handle = path.open("rb")
        except OSError:
            continue
        with handle:
            while chunk := handle.read(READ_BYTES):
                yield chunk


# --- A task's attempts ---


def attempt_path(task_id: int, attempt: int) -> Path:
    return files.attempt_log_path(conf.get().log_dir, task_id, attempt)


def attempt_number(task: Task, asked: int | None) -> int | None:
    """The attempt a page shows: the one asked for, else the latest; None before any."""
    if asked is not None:
        if not 1 <= asked <= task.attempt:
            raise LogNotFound(f"task {task.pk} has no attempt {asked}")
        return asked
    return task.attempt or None


def attempt_live(task: Task, attempt: int) -> bool:
    return task.state == TaskState.RUNNING and attempt == task.attempt


def attempt_view(task: Task, asked: int | None = None) -> LogView | None:
    """The log of an attempt of ``task`` (the latest by default); None before any attempt."""
    number = attempt_number(task, asked)
    if number is None:
        return None
    live = attempt_live(task, number)
    path = attempt_path(task.pk, number)
    label = f"Attempt {number}"
    node = _node(task.worker_id) if live else None
    if path.is_file() or node == conf.get().node_address:
        return LogView(label, tail_chunk(path, live=live), live, True, attempt=number)
    kept = TaskAttempt.objects.filter(task=task, number=number).values_list("log_tail", flat=True)
    tail = kept.first() or ""
    return LogView(label, Chunk(tail, 0), False, False, _missing(node, tail), number)


def _node(worker_id: int | None) -> str | None:
    if worker_id is None:
        return None
    return Worker.objects.filter(pk=worker_id).values_list("node", flat=True).first()


def _missing(node: str | None, tail: str) -> str:
    if node is not None:
        return f"This attempt runs on node {node}: its log is written there, not here."
    if tail:
        return ("The whole log is not on this machine (another node ran it, or it was "
                "removed); this is the tail the database kept.")
    return "This attempt printed nothing: it has no log."


def attempt_chunk(task: Task, attempt: int, offset: int) -> tuple[Chunk, bool]:
    """What the attempt logged after ``offset``, and whether it is still running."""
    live = attempt_live(task, attempt)
    return read_from(attempt_path(task.pk, attempt), offset, live=live), live


def attempt_files(task: Task, attempt: int) -> list[Path]:
    """The whole log of one attempt, for a download: its rotated part first, if any."""
    attempt_number(task, attempt)
    path = attempt_path(task.pk, attempt)
    if not path.is_file():
        raise LogNotFound(
            f"The log of task {task.pk}, attempt {attempt} is not on this machine "
            "(another node ran it, it was removed with old tasks, or it printed nothing)."
        )
    return [part for part in (files.backup_path(path), path) if part.is_file()]


def sweep_orphans() -> int:
    """Delete this machine's attempt logs of tasks that no longer exist; how many went.

    One folder of a thousand tasks per call, the next one each time (round the folders):
    retention deletes the logs on the machine that prunes, this catches the other ones.
    """
    log_dir = conf.get().log_dir
    shards = _numbers(log_dir / files.TASKS_DIR)
    if not shards:
        return 0
    cursor = log_dir / files.TASKS_DIR / SWEPT
    last = _read_number(cursor)
    shard = next((n for n in shards if n > last), shards[0])
    folder = files.shard_dir(log_dir, shard)
    ids = _numbers(folder)
    gone = set(ids) - set(Task.objects.filter(pk__in=ids).values_list("pk", flat=True))
    removed = remove_task_logs(sorted(gone))
    with contextlib.suppress(OSError):
        cursor.write_text(str(shard))
        if removed == len(ids) and shard != shards[-1]:  # new tasks land in the last
            folder.rmdir()
    return removed


def _numbers(folder: Path) -> list[int]:
    """The names of a folder's entries that are numbers, in order ([] if it is missing)."""
    try:
        with os.scandir(folder) as entries:
            return sorted(int(entry.name) for entry in entries if entry.name.isdigit())
    except OSError:
        return []


def _read_number(path: Path) -> int:
    try:
        return int(path.read_text() or -1)
    except (OSError, ValueError):
        return -1


def remove_task_logs(task_ids: Iterable[int]) -> int:
    """Delete the attempt logs of these tasks on this machine; how many folders went."""
    log_dir = conf.get().log_dir
    removed = 0
    for task_id in task_ids:
        folder = files.task_log_dir(log_dir, task_id)
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


# --- Workers ---


def worker_path(worker_id: int) -> Path:
    return files.log_path(conf.get().log_dir, worker_id)


def worker_live(worker: Worker) -> bool:
    return worker.state in ACTIVE_WORKER_STATES


def worker_view(worker: Worker) -> LogView:
    path = worker_path(worker.pk)
    live = worker_live(worker)
    if path.is_file():
        return LogView("Worker log", tail_chunk(path, live=live), live, True)
    note = (
        f"Its log is on node {worker.node}, not on this machine."
        if worker.log_tail
        else f"No log file of worker {worker.pk} on this machine (its node: {worker.node})."
    )
    return LogView("Worker log", Chunk(worker.log_tail, 0), False, False, note)


def worker_chunk(worker: Worker, offset: int) -> tuple[Chunk, bool]:
    live = worker_live(worker)
    return read_from(worker_path(worker.pk), offset, live=live), live


def worker_files(worker: Worker) -> list[Path]:
    """The worker's log files, oldest first (rotated backups, then the current one)."""
    found = files.rotated_paths(conf.get().log_dir, worker.pk)
    if not found:
        raise LogNotFound(
            f"The log of worker {worker.pk} is not on this machine (its node: {worker.node})."
        )
    return found

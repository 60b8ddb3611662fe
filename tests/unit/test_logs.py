"""Reading logs: tails cut at line starts, chunks that never split a line while written,
rotation, and a worker's download joining its rotated files oldest first."""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import pytest

from workers.admin import exit_text
from workers.models import Task, Worker
from workers.runtime import logs as files
from workers.web import logs


def test_clip_keeps_the_last_whole_lines():
    text = "first line\nsecond line\nthird\n"
    assert files.clip(text, 100) == text
    assert files.clip(text, 18) == "second line\nthird\n"
    assert files.clip(text, 15) == "third\n"  # not "ond line\nthird\n"
    assert files.clip("a\nb\n", 2) == "b\n"
    assert files.clip("mid-line\nend\n", 10, cut=True) == "end\n"


def test_clip_starts_a_line_longer_than_the_limit_at_a_word():
    line = " ".join(f"word{n}" for n in range(100))
    clipped = files.clip(line, 50)
    assert len(clipped) <= 50 and clipped.startswith("…word")
    assert clipped.endswith("word99")


def test_a_file_tail_starts_at_a_line(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("".join(f"line number {n}\n" for n in range(1000)))
    tail = files.tail(path, 100)
    assert tail.startswith("line number ") and tail.endswith("line number 999\n")
    assert len(tail) <= 100
    assert files.tail(tmp_path / "missing.log") == ""


def test_a_chunk_of_a_live_log_waits_for_the_end_of_its_line(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes("one\ntwo ü\nthr".encode())
    first = logs.tail_chunk(path, live=True)
    assert first == logs.Chunk("one\ntwo ü\n", len("one\ntwo ü\n".encode()))
    assert logs.read_from(path, first.offset, live=True) == logs.Chunk("", first.offset)
    ended = logs.read_from(path, first.offset, live=False)
    assert ended.text == "thr" and ended.offset == path.stat().st_size


def test_a_tail_chunk_of_a_big_file_starts_at_a_line(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_text("".join(f"{n:06d}\n" for n in range(100_000)))
    chunk = logs.tail_chunk(path, live=False, limit=1000)
    assert chunk.text.startswith("0") and chunk.text.endswith("099999\n")
    assert len(chunk.text) <= 1000 and chunk.offset == path.stat().st_size


def test_a_rotated_log_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "w.log"
    path.write_text("new\n")
    assert logs.read_from(path, 500, live=True) == logs.Chunk("new\n", 4)


@pytest.mark.django_db
def test_a_workers_download_joins_its_rotated_files_oldest_first(crucible: Any) -> None:
    worker = Worker.objects.create(node="here")
    current = files.log_path(crucible.log_dir, worker.pk)
    current.parent.mkdir(parents=True)
    for suffix, text in (("", "newest\n"), (".1", "older\n"), (".2", "oldest\n")):
        current.with_name(current.name + suffix).write_text(text)
    found = logs.worker_files(worker)
    assert b"".join(logs.stream(found)) == b"oldest\nolder\nnewest\n"


@pytest.mark.parametrize(("code", "text"), [
    (None, "\u2013"), (0, "exit code 0"), (1, "exit code 1"),
    (-9, "killed by signal 9 (SIGKILL)"), (-200, "killed by signal 200"),
])
def test_an_exit_reads_as_a_code_a_signal_or_nothing(code: int | None, text: str) -> None:
    assert exit_text(code) == text


def test_an_attempt_log_that_cannot_be_written_never_stops_the_task(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "tasks"
    blocker.write_text("a file where the folder should be")
    log = files.AttemptLog(files.attempt_log_path(tmp_path, 7, 1))
    log.write(b"lost\n")
    log.close()
    assert "cannot write the attempt's log" in caplog.text

    written = files.AttemptLog(files.attempt_log_path(tmp_path / "ok", 7, 2))
    written.write(b"kept\n")
    written.close()
    written.write(b"after the end\n")
    assert (tmp_path / "ok" / "tasks" / "0" / "7" / "attempt_2.log").read_bytes() == b"kept\n"


def test_an_attempt_that_prints_nothing_leaves_no_file_and_no_folder(tmp_path: Path) -> None:
    log = files.AttemptLog(files.attempt_log_path(tmp_path, 9, 1))
    log.write(b"")
    log.close()
    assert list(tmp_path.iterdir()) == []


def test_an_attempt_log_past_its_limit_keeps_its_last_part(tmp_path: Path) -> None:
    path = files.attempt_log_path(tmp_path, 8, 1)
    log = files.AttemptLog(path, max_bytes=10)
    for line in (b"one\n", b"two\n", b"three\n", b"four\n", b"five\n"):
        log.write(line)
    log.close()
    assert files.backup_path(path).read_bytes() == b"three\n"  # "one", "two" went
    assert path.read_bytes() == b"four\nfive\n"
    assert files.AttemptLog(tmp_path / "default.log").max_bytes == 50 * 1024 * 1024


@pytest.mark.django_db
def test_an_attempts_download_joins_its_rotated_part_first(crucible: Any) -> None:
    task = Task.objects.create(func_path="tests.testapp.tasks.noop", timeout=60, attempt=1)
    path = logs.attempt_path(task.pk, 1)
    log = files.AttemptLog(path, max_bytes=10)
    for line in (b"one\n", b"two\n", b"three\n"):
        log.write(line)
    log.close()
    assert b"".join(logs.stream(logs.attempt_files(task, 1))) == b"one\ntwo\nthree\n"


def test_the_worker_log_writes_its_lines_out_when_flushed_and_rotates_at_its_size(
        tmp_path: Path) -> None:
    """Lines reach the file when the worker's loop waits (``flush_pending``), and the file
    rotates once the next line would pass its size."""
    path = tmp_path / "worker_1.log"
    handler = files.WorkerLog(path)
    handler.maxBytes = 200
    handler.setFormatter(logging.Formatter("%(message)s"))
    record = functools.partial(logging.LogRecord, "t", logging.INFO, __file__, 1,
                               args=(), exc_info=None)
    handler.handle(record(msg="a" * 59))
    assert handler.pending and path.read_text() == ""

    handler.flush()
    assert not handler.pending and path.read_text() == "a" * 59 + "\n"
    for letter in "bcd":
        handler.handle(record(msg=letter * 59))
    handler.flush()
    handler.close()
    assert files.backup_path(path).read_text() == "".join(f"{c * 59}\n" for c in "abc")
    assert path.read_text() == "d" * 59 + "\n"


def test_the_worker_format_reads_as_loggings_own_across_seconds() -> None:
    """Formatted once for the file and the console, the time's seconds once a second:
    the same text as logging's own formatter, record after record."""
    ours, theirs = files.LineFormatter(), logging.Formatter(files.FORMAT)
    for created in (1796172940.2, 1796172940.9995, 1796172941.0001, 1796172941.5, 1796172999.0):
        record = logging.LogRecord("django.tasks", logging.INFO, __file__, 1, "Task id=%s",
                                   ("7",), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.format(record) == theirs.format(record)
        assert ours.format(record) == theirs.format(record), "the second time, from its cache"

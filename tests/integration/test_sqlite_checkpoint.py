"""SQLite: what a power cut would keep is the database file; the tick brings commits to it.

With synchronous=NORMAL a commit is appended to the write-ahead log unsynced, and reaches
the database file (synced) at a checkpoint. SQLite checkpoints on its own only once the log
is large (``config.settings.SQLITE_WAL_PAGES``), so the workers' tick checkpoints every
CHECKPOINT_EVERY seconds. Here the database file is copied without its log, as a machine
that lost power would find it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from django.db import connection

from config.settings import SQLITE_WAL_PAGES
from workers.pool import monitor, stamps

from .helpers import enqueue

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'sqlite'",
                       reason="SQLite's write-ahead log; PostgreSQL syncs every commit"),
]


def kept_after_a_power_cut(tmp_path: Path, task_id: int) -> bool:
    """Whether the database file alone (no log) holds the task."""
    copy = tmp_path / "file-only.sqlite3"
    shutil.copyfile(connection.settings_dict["NAME"], copy)
    with sqlite3.connect(copy) as db:
        found: int = db.execute("SELECT count(*) FROM workers_task WHERE id = ?",
                                [task_id]).fetchone()[0]
    return found == 1


def empty_log() -> None:
    """Start from an empty log, so that no commit of the test fills it to the size at
    which SQLite checkpoints on its own (earlier tests wrote to the same database)."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def test_every_connection_lets_the_log_grow_to_the_projects_size(crucible):
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_autocheckpoint")
        assert cursor.fetchone()[0] == SQLITE_WAL_PAGES
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"


def test_the_tick_brings_a_commit_to_the_database_file(crucible, tmp_path):
    empty_log()
    job = enqueue("add", 1, 2)
    assert not kept_after_a_power_cut(tmp_path, job.pk), "only in the log so far"

    monitor.tick(leases=False, prune=False, sample=False, learn=False, checkpoint=True)

    assert kept_after_a_power_cut(tmp_path, job.pk)


def stamp_at(job: str, moment: float) -> None:
    fd = stamps._open_for_writing(job)
    stamps._write(fd, moment)
    os.close(fd)


def test_the_node_checkpoints_when_its_turn_comes(crucible, tmp_path):
    """maybe_tick checkpoints once every CHECKPOINT_EVERY for the node, not at every tick."""
    empty_log()
    job = enqueue("add", 1, 2)
    stamp_at("checkpoint", time.monotonic())  # another process of the node just did
    stamp_at("tick", 0.0)
    monitor.maybe_tick()
    assert not kept_after_a_power_cut(tmp_path, job.pk), "not its turn yet"

    stamp_at("checkpoint", time.monotonic() - monitor.CHECKPOINT_EVERY)
    stamp_at("tick", 0.0)
    monitor.maybe_tick()

    assert kept_after_a_power_cut(tmp_path, job.pk)

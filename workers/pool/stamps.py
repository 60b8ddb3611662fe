"""Stamps the processes of one machine share through small files: no SQL.

A stamp is a moment on the system-wide monotonic clock, so every process of the machine
reads it alike. The files live beside the doorbells (WORKER_DOORBELL_DIR), one per job and
node: the node's monitor tick takes turns through them, and idle workers of one node
share what their last look at the queue found.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import time
from pathlib import Path

from .. import conf
from ..queue import doorbell

WIDTH = 24  # a stamp is written whole at this width, so a reader never sees half of one


def _path(job: str) -> Path:
    return _path_in(doorbell.bell_dir(), conf.get().node_address, job)


@functools.lru_cache(maxsize=64)
def _path_in(directory: Path, node: str, job: str) -> Path:
    """Asked on a busy worker's every task end: worked out (and the folder made) once."""
    digest = hashlib.sha1(f"{node}\0{job}".encode(), usedforsecurity=False).hexdigest()[:16]
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory / f"{job.partition(':')[0]}-{digest}.stamp"


def _read(fd: int) -> float:
    try:
        return float(os.pread(fd, WIDTH, 0) or b"0")
    except ValueError:
        return 0.0


def _write(fd: int, moment: float) -> None:
    os.pwrite(fd, f"{moment:<{WIDTH}.6f}".encode()[:WIDTH], 0)


def _open_for_writing(job: str) -> int:
    path = _path(job)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError:  # its folder was removed since: make it again
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def take_turn(job: str, interval: float) -> bool:
    """Whether this process runs ``job`` for its node now: nobody took it within
    ``interval`` seconds (or the stamp is unreadable). Taking the turn renews the stamp."""
    fd = _open_for_writing(job)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    try:
        now = time.monotonic()
        if 0.0 <= now - _read(fd) < interval:
            return False
        _write(fd, now)
        return True
    finally:
        os.close(fd)  # releases the lock


def stamp(job: str) -> None:
    """Record that ``job`` was done now (best effort: an unwritable folder records nothing)."""
    try:
        fd = _open_for_writing(job)
    except OSError:
        return
    try:
        _write(fd, time.monotonic())
    finally:
        os.close(fd)


def age(job: str) -> float:
    """Seconds since ``job`` was last stamped on this node (infinite if never or unreadable)."""
    try:
        fd = os.open(_path(job), os.O_RDONLY)
    except OSError:
        return float("inf")
    try:
        last = _read(fd)
    finally:
        os.close(fd)
    elapsed = time.monotonic() - last
    return elapsed if last > 0 and elapsed >= 0 else float("inf")


__all__ = ["age", "stamp", "take_turn"]

"""SQLite: the workers of a database take turns at its write lock, woken as it comes free.

SQLite lets one writer in at a time. A writer that finds the lock taken sleeps in its busy
handler (1 ms, then 2, 5, 10 ...) and tries again, while a busy worker holds it for a
third of a millisecond: two workers draining short tasks lost the difference at every
collision. A busy worker's success-and-claim first takes an exclusive ``flock`` on a file
in the database's doorbell folder, which the kernel hands to the next waiter the moment it
is let go; SQLite's own lock still decides who writes (writers that take no turn, such as
an enqueue, wait in the busy handler as before).

The turn is held for the transaction only, and a process that dies lets it go. A process
that holds it and is frozen (SIGSTOP) outside the transaction would stop the others: they
wait at most TURN_WAIT, then write without a turn. Waiting is bounded by a timer, which
only the main thread can arm; other threads take the turn only when it is free.
"""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType

from django.db import connection

from .. import conf
from .doorbell import bell_dir

TURN_WAIT = 1.0  # seconds: far above a turn (a third of a millisecond), below a stall


class _Late(Exception):
    """The timer rang before the turn came."""


_ARMED = [False]  # the timer's ring interrupts only the wait itself


_FDS: dict[str, int] = {}
_BY_DATABASE: dict[tuple[Path | None, str], int] = {}


def _turn_fd(path: str) -> int:
    fd = _FDS.get(path)
    if fd is None:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = _FDS[path] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    return fd


def _forget() -> None:
    """In a forked child (an executor, a sentinel): a copy of the file would keep a turn
    its parent held while it forked until the child ends, though the parent died."""
    for fd in _FDS.values():
        os.close(fd)
    _FDS.clear()
    _BY_DATABASE.clear()


os.register_at_fork(after_in_child=_forget)


def _ring(signum: int, frame: FrameType | None) -> None:
    if _ARMED[0]:
        raise _Late


def _wait(fd: int) -> bool:
    """Block for the turn, at most TURN_WAIT; whether it came. The timer may ring just as
    the turn comes: then it is let go again (unlocking what is not held does nothing).
    A timer another part of the process had set (pytest-timeout's, say) is set again
    after, less the wait."""
    if threading.current_thread() is not threading.main_thread():
        return False
    previous = signal.signal(signal.SIGALRM, _ring)
    began = time.monotonic()
    pending, interval = signal.setitimer(signal.ITIMER_REAL, TURN_WAIT)
    _ARMED[0] = True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        _ARMED[0] = False
    except _Late:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        _ARMED[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        # None: a handler not set from Python, which cannot be set again from it
        signal.signal(signal.SIGALRM, signal.SIG_DFL if previous is None else previous)
        if pending:
            left = max(pending - (time.monotonic() - began), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, interval)
    return True


def _take(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _wait(fd)
    return True


def take() -> int | None:
    """Take this database's write turn: the file it is held on, to ``let_go``; or None,
    gone without it (after TURN_WAIT, or where its file cannot be had: SQLite's lock alone
    is enough to be right)."""
    fd = _this_databases_fd()
    return fd if fd is not None and _take(fd) else None


def let_go(fd: int | None) -> None:
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _this_databases_fd() -> int | None:
    """The turn's file of this process's database, found once: working out its folder
    (``bell_dir``, a hash of the database's name) was a third of a turn's cost."""
    key = (conf.get().doorbell_dir, connection.settings_dict["NAME"])
    fd = _BY_DATABASE.get(key)
    if fd is None:
        try:
            fd = _BY_DATABASE[key] = _turn_fd(str(bell_dir() / "write-turn"))
        except OSError:
            return None
    return fd

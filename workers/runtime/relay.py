"""PostgreSQL: one worker of a machine listens for its queues' wake-ups, for all of them.

A NOTIFY reaches every connection that LISTENs on its channel. With every worker
listening on its queues, each enqueue woke every idle worker of the queue on every
machine, and all but one claimed for nothing (0.3-0.4 ms of CPU each: bench/README.md,
"a wake-up herd"). Now the workers of a machine that serve the same queues share one
listener: the one that holds a lock (an ``flock`` on a file beside the doorbells, held
while it lives) LISTENs on the queues' channels and passes each wake-up on by datagram
as an enqueue on SQLite does (``doorbell.relay``): to one idle worker of the queue
(itself, when it is idle), which passes it on once it has taken a task if more is due,
and to every worker not idle. Every worker still listens on its own channel, for its
control flags.

When the holder ends, it lets the lock go and rings the others (``doorbell.RELAY``): one
takes it at once. When it is killed, the kernel lets the lock go, and another worker takes
it at its next heartbeat or poll; polls cover the gap. A frozen holder keeps the lock:
the machine's idle workers then find new work at their polls only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os

from ..queue.doorbell import bell_dir

logger = logging.getLogger(__name__)
_OPEN: set[int] = set()  # every lock file this process holds open


def _forget() -> None:
    """In a forked child (an executor, a sentinel): a copy of the descriptor would keep
    the lock held after its worker died, until the child ended too."""
    for fd in _OPEN:
        with contextlib.suppress(OSError):
            os.close(fd)
    _OPEN.clear()


os.register_at_fork(after_in_child=_forget)


class Relay:
    """A worker's claim on listening for its machine's workers of ``queues``."""

    def __init__(self, queues: list[str], worker_id: int) -> None:
        key = "\0".join(sorted(queues))
        digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:16]
        self.path = bell_dir() / f"relay-{digest}"
        self.queues = queues
        self.worker_id = worker_id
        self.fd: int | None = None  # the lock's file, held: this worker relays
        self.held = False  # this worker listens on the queues' channels

    @property
    def relays(self) -> bool:
        """Whether it passes what it hears on to the others (it holds the lock)."""
        return self.fd is not None

    def take(self) -> bool:
        """Take the lock if it is free; whether this worker listens for the queues now.
        Where the lock's file cannot be opened, each worker listens for itself, as before."""
        if self.held:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            logger.warning("cannot open %s; worker %s listens for its queues itself: %s",
                           self.path, self.worker_id, exc)
            self.held = True
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self.fd, self.held = fd, True
        _OPEN.add(fd)
        logger.info("worker %s listens for this machine's workers of queues %s",
                    self.worker_id, self.queues)
        return True

    def close(self) -> None:
        """Let the lock go (closing the file does)."""
        self.held = False
        if self.fd is None:
            return
        _OPEN.discard(self.fd)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = None

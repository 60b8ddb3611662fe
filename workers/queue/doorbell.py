"""Wake idle workers at once: datagrams to local workers, LISTEN/NOTIFY across machines.

Messages are ``q:<queue>`` (work arrived), ``w:<worker id>`` (look at your control flags),
``freed`` (a task of this machine ended: a worker that found a due task too large for
what was free claims again) and ``relay`` (the worker that listened for this machine
ended: take its place); the last two by datagram only, never across machines.
By datagram, work arriving wakes one idle worker of its queue (marked by a file beside the
doorbells), which passes it on once it has taken a task if more is due, and every
worker not idle.
On PostgreSQL each queue and each worker has its own channel: each worker listens on its
own, and one worker of a machine on its queues' (``runtime.relay``), passing work
arriving on by datagram as above. Polling at WORKER_POLL_INTERVAL stays the fallback when
a wake-up is lost.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import random
import socket
import tempfile
from collections.abc import Iterable
from pathlib import Path

from django.db import connection, transaction

from .. import conf

logger = logging.getLogger(__name__)
CHANNEL = "crucible"  # prefix of every channel
FREED = "freed"  # a task of this machine ended: its memory and CPUs are free again
RELAY = "relay"  # the worker that listened for this machine's queues ended


def channel(message: str) -> str:
    """The LISTEN/NOTIFY channel of a message: one per queue, one per worker.

    Queue names may be any text, channels are identifiers of at most 63 bytes: a digest.
    """
    kind, _, name = message.partition(":")
    if kind == "w":
        return f"{CHANNEL}_w_{int(name)}"
    digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:20]
    return f"{CHANNEL}_q_{digest}"


def channels(queues: list[str], worker_id: int) -> list[str]:
    """What one worker listens to."""
    return [channel(f"q:{name}") for name in queues] + [channel(f"w:{worker_id}")]


def bell_dir() -> Path:
    """The folder of this database's doorbells, shared by every local process using it."""
    configured = conf.get().doorbell_dir
    if configured is not None:
        return configured
    identity = f"{connection.vendor}:{connection.settings_dict['NAME']}"
    digest = hashlib.sha1(identity.encode(), usedforsecurity=False).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"crucible-bell-{digest}"


def ring_all(message: str) -> None:
    """Tell every worker of this database (local by datagram, remote by NOTIFY)."""
    if connection.vendor == "postgresql":
        notify(message)
        return
    ring_local(message)


def ring_on_commit(queues: Iterable[str]) -> None:
    """Once the caller's transaction commits, tell every worker that work arrived in
    ``queues``, each queue once, in name order."""
    for name in sorted(set(queues)):
        transaction.on_commit(functools.partial(ring_all, f"q:{name}"))


def ring_local(message: str) -> None:
    """Tell the workers on this machine (by datagram), whatever the database.

    Work arriving (``q:<queue>``) wakes one idle worker of that queue, not every one:
    each woken worker claims, and all but one found nothing, at a cost to each of them
    (bench/README.md, "a wake-up herd"). The one woken passes the wake-up on when its
    claim took a task and more is due (``pass_on``), so that a burst reaches as many idle
    workers as it needs. Every worker not marked idle is rung too: it may be going idle
    just now, after a claim that came too early to see this task, and to one at work it
    costs a datagram. Every other message reaches every worker.
    """
    _ring_local(message, None)


def relay(message: str, worker_id: int) -> None:
    """From the worker that listens for this machine (PostgreSQL): pass a message it
    received on as ``ring_local`` does, but not to itself, which acts on it already; when
    it waits idle for the queue itself, it is the idle worker woken."""
    _ring_local(message, str(worker_id))


def _ring_local(message: str, me: str | None) -> None:
    directory = bell_dir()
    names = _names(directory)
    kind, _, queue = message.partition(":")
    idle = _idle_ids(names, queue) if kind == "q" else set()
    for name in names:
        worker_id, dot, suffix = name.partition(".")
        if dot and suffix == "sock" and worker_id not in idle and worker_id != me:
            ring(str(directory / name), message)
    if idle and me not in idle:
        _ring_one(directory, names, idle, queue)


def pass_on(queue: str, worker_id: int) -> None:
    """From an idle worker whose claim took a task: wake one more idle worker of ``queue``
    on this machine, if there is one, as more may wait."""
    directory = bell_dir()
    names = _names(directory)
    _ring_one(directory, names, _idle_ids(names, queue) - {str(worker_id)}, queue)


def anyone_idle(queues: list[str], worker_id: int) -> bool:
    """Whether a worker of this machine other than ``worker_id`` waits idle for one of
    ``queues`` (marked by its file)."""
    names = _names(bell_dir())
    return any(_idle_ids(names, queue) - {str(worker_id)} for queue in queues)


def others_here(worker_id: int) -> bool:
    """Whether another worker of this machine has a doorbell (a gone one's is cleared
    when it is next rung)."""
    mine = f"{worker_id}.sock"
    return any(name.endswith(".sock") and name != mine for name in _names(bell_dir()))


def _names(directory: Path) -> set[str]:
    """What the doorbells' folder holds: sockets, idle marks, stamps (none if it is gone)."""
    try:
        return {entry.name for entry in os.scandir(directory)}
    except FileNotFoundError:
        return set()


def _idle_prefix(queue: str) -> str:
    digest = hashlib.sha1(queue.encode(), usedforsecurity=False).hexdigest()[:16]
    return f"idle-{digest}-"


def idle_mark(directory: Path, queue: str, worker_id: int | str) -> Path:
    """The file that says worker ``worker_id`` waits idle for work in ``queue``."""
    return directory / f"{_idle_prefix(queue)}{worker_id}"


def _idle_ids(names: set[str], queue: str) -> set[str]:
    prefix = _idle_prefix(queue)
    return {name[len(prefix):] for name in names if name.startswith(prefix)}


def _ring_one(directory: Path, names: set[str], idle: set[str], queue: str) -> None:
    """Ring one of the ``idle`` workers of ``queue``, chosen at random: the next if its
    worker is gone (its mark is cleared)."""
    for worker_id in random.sample(sorted(idle), len(idle)):
        if f"{worker_id}.sock" in names and ring(str(directory / f"{worker_id}.sock"),
                                                 f"q:{queue}"):
            return
        with contextlib.suppress(OSError):
            idle_mark(directory, queue, worker_id).unlink()


def ring(path: str, message: str) -> bool:
    """Send one datagram; forget a doorbell whose worker has gone. Whether it was had."""
    if not path:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            sock.sendto(message.encode(), path)
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(OSError):
                Path(path).unlink()
            return False
        except BlockingIOError:
            pass  # its buffer is full of wake-ups already
    return True


def notify(message: str) -> None:
    """NOTIFY on PostgreSQL, on the message's own channel; delivered at commit."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [channel(message), message])


class Doorbell:
    """The receiving end of one worker's doorbell."""

    def __init__(self, worker_id: int) -> None:
        directory = bell_dir()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory
        self.worker_id = worker_id
        self.marked: list[str] = []  # the queues it is marked idle for
        self.path = str(directory / f"{worker_id}.sock")
        with contextlib.suppress(FileNotFoundError):
            Path(self.path).unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[str]:
        messages: list[str] = []
        while True:
            try:
                messages.append(self.sock.recv(256).decode())
            except BlockingIOError:
                return messages

    def idle(self, queues: list[str]) -> None:
        """Mark this worker idle for ``queues``: work arriving there may ring it alone."""
        if self.marked:
            return
        for queue in queues:
            with contextlib.suppress(OSError):
                os.close(os.open(idle_mark(self.directory, queue, self.worker_id),
                                 os.O_WRONLY | os.O_CREAT, 0o600))
        self.marked = list(queues)

    def busy(self) -> None:
        """No longer idle: rung like every worker at work."""
        for queue in self.marked:
            with contextlib.suppress(OSError):
                idle_mark(self.directory, queue, self.worker_id).unlink()
        self.marked = []

    def close(self) -> None:
        self.busy()
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            Path(self.path).unlink()

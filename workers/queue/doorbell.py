"""Wake idle workers at once: a datagram per local worker, LISTEN/NOTIFY across machines.

Messages are ``q:<queue>`` (work arrived), ``w:<worker id>`` (look at your control flags)
and ``freed`` (a task of this machine ended: a worker that found a due task too large for
what was free claims again; by datagram only, never across machines).
On PostgreSQL each queue and each worker has its own channel, so an enqueue wakes only the
workers of that queue. Polling at WORKER_POLL_INTERVAL stays the fallback when a wake-up is
lost.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import socket
import tempfile
from pathlib import Path

from django.db import connection

from .. import conf

logger = logging.getLogger(__name__)
CHANNEL = "crucible"  # prefix of every channel
FREED = "freed"  # a task of this machine ended: its memory and CPUs are free again


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


def ring_local(message: str) -> None:
    """Tell every worker on this machine (by datagram), whatever the database."""
    directory = bell_dir()
    with contextlib.suppress(FileNotFoundError):
        for path in directory.iterdir():
            if path.suffix == ".sock":
                ring(str(path), message)


def ring(path: str, message: str) -> None:
    """Send one datagram; forget a doorbell whose worker has gone."""
    if not path:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            sock.sendto(message.encode(), path)
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(OSError):
                Path(path).unlink()
        except BlockingIOError:
            pass  # its buffer is full of wake-ups already


def notify(message: str) -> None:
    """NOTIFY on PostgreSQL, on the message's own channel; delivered at commit."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [channel(message), message])


class Doorbell:
    """The receiving end of one worker's doorbell."""

    def __init__(self, worker_id: int) -> None:
        directory = bell_dir()
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
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

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            Path(self.path).unlink()

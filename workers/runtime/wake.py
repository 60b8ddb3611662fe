"""What wakes an idle worker: its doorbell, and on PostgreSQL a LISTEN connection."""

from __future__ import annotations

import contextlib
import logging
import select
import time
from typing import TYPE_CHECKING, Any

from django.db import connection

from ..queue import doorbell

if TYPE_CHECKING:
    import psycopg
    from psycopg.pq.abc import PGconn

logger = logging.getLogger(__name__)
DEFAULT_PROBE_TIMEOUT = 5.0  # seconds, when the connection parameters set no connect_timeout


class Listener:
    """A dedicated autocommit connection that LISTENs for wake-ups across machines.

    It is made from Django's connection parameters (sslmode, options, application_name,
    timeouts and keepalives carry over) and can be probed, so a dead one is noticed.
    """

    def __init__(self, channels: list[str]) -> None:
        self.channels = channels
        self.conn: psycopg.Connection[Any] | None = None
        self.fd = -1  # kept after a loss, so the selector can still unregister it
        self.timeout = DEFAULT_PROBE_TIMEOUT
        self.pending: list[str] = []  # read off the socket by a probe

    def connect(self) -> bool:
        import psycopg  # only PostgreSQL deployments pay for importing it

        params = connection.get_connection_params()
        self.timeout = float(params.get("connect_timeout") or DEFAULT_PROBE_TIMEOUT)
        try:
            self.conn = psycopg.connect(**params, autocommit=True)
            for name in self.channels:
                self.conn.execute(f"LISTEN {name}")
            self.fd = self.conn.fileno()
        except psycopg.Error as exc:
            logger.warning("cannot LISTEN for wake-ups (polling meanwhile): %s", exc)
            self.close()
            return False
        return True

    def add(self, channels: list[str]) -> None:
        """Listen on more channels, now and after every reconnection; the connection is
        closed if it broke."""
        import psycopg

        new = [name for name in channels if name not in self.channels]
        self.channels += new
        if self.conn is None or not new:
            return
        statements = "; ".join(f"LISTEN {name}" for name in new)
        pgconn = self.conn.pgconn
        try:  # within the probe's timeout: a silent network must not hold the worker's loop
            _ask(pgconn, statements.encode(), self.timeout)
        except (psycopg.Error, TimeoutError) as exc:
            logger.warning("lost the LISTEN connection: %s", exc)
            self.close()
            return
        self._keep_notifies()  # read off the socket meanwhile

    def probe(self) -> bool:
        """Run a trivial statement, within the connect timeout; close the connection if it fails.

        Notifications that arrive meanwhile are kept for the next ``read()``.
        """
        import psycopg

        if self.conn is None:
            return False
        pgconn = self.conn.pgconn
        try:
            _ask(pgconn, b"SELECT 1", self.timeout)
        except (psycopg.Error, TimeoutError) as exc:
            logger.warning("the LISTEN connection failed its probe (polling meanwhile): %s", exc)
            self.close()
            return False
        self._keep_notifies()
        return True

    def _keep_notifies(self) -> None:
        """Keep the notifications libpq read off the socket while it ran a statement of
        ours: the socket, already read, would not wake the worker's loop for them."""
        assert self.conn is not None
        pgconn = self.conn.pgconn
        while (notify := pgconn.notifies()) is not None:
            self.pending.append(notify.extra.decode(errors="replace"))

    def fileno(self) -> int:
        return self.fd

    def read(self) -> list[str]:
        """Messages waiting now (and any a probe kept); the connection is closed if it broke."""
        import psycopg

        kept, self.pending = self.pending, []
        if self.conn is None:
            return kept
        try:
            return kept + [n.payload for n in self.conn.notifies(timeout=0)]
        except psycopg.Error as exc:
            logger.warning("lost the LISTEN connection: %s", exc)
            self.close()
            return kept

    def close(self) -> None:
        import psycopg

        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
        self.conn = None


def _ask(pgconn: PGconn, query: bytes, timeout: float) -> None:
    """Run ``query`` through libpq's asynchronous calls, giving up after ``timeout`` seconds.

    psycopg's blocking calls have no deadline: a silent network would hold the worker's loop
    until TCP gives up.
    """
    import psycopg
    from psycopg import pq

    deadline = time.monotonic() + timeout
    pgconn.send_query(query)
    while pgconn.flush():  # 1: output still queued
        _wait(pgconn.socket, deadline, writing=True)
    while True:
        pgconn.consume_input()
        if pgconn.is_busy():
            _wait(pgconn.socket, deadline)
            continue
        result = pgconn.get_result()
        if result is None:
            return
        if result.status not in {pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK}:
            raise psycopg.OperationalError(result.error_message.decode(errors="replace"))


def _wait(fd: int, deadline: float, writing: bool = False) -> None:
    remaining = deadline - time.monotonic()
    poller = select.poll()
    poller.register(fd, select.POLLOUT if writing else select.POLLIN)
    if remaining <= 0 or not poller.poll(remaining * 1000):
        raise TimeoutError("no answer from the database within the probe's timeout")


def listener_for_database(worker_id: int) -> Listener | None:
    """On PostgreSQL, a worker's own channel (its control flags); its queues' channels are
    added when it listens for its machine (``relay``)."""
    if connection.vendor != "postgresql":
        return None
    listener = Listener(doorbell.channels([], worker_id))
    listener.connect()  # on failure the supervisor polls, and tries again later
    return listener

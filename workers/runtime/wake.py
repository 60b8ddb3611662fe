"""What wakes an idle worker: its doorbell, and on PostgreSQL a LISTEN connection."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Any

from django.db import connection

from .. import doorbell

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)


class Listener:
    """A dedicated autocommit connection that LISTENs for wake-ups across machines."""

    def __init__(self) -> None:
        self.conn: psycopg.Connection[Any] | None = None
        self.fd = -1  # kept after a loss, so the selector can still unregister it

    def connect(self) -> bool:
        import psycopg  # only PostgreSQL deployments pay for importing it

        settings = connection.settings_dict
        try:
            self.conn = psycopg.connect(
                dbname=settings["NAME"],
                user=settings.get("USER") or None,
                password=settings.get("PASSWORD") or None,
                host=settings.get("HOST") or None,
                port=settings.get("PORT") or None,
                autocommit=True,
            )
            self.conn.execute(f"LISTEN {doorbell.CHANNEL}")
            self.fd = self.conn.fileno()
        except psycopg.Error as exc:
            logger.warning("cannot LISTEN for wake-ups (polling meanwhile): %s", exc)
            self.close()
            return False
        return True

    def fileno(self) -> int:
        return self.fd

    def read(self) -> list[str]:
        """Messages waiting now; an empty list and a closed connection if it broke."""
        import psycopg

        if self.conn is None:
            return []
        try:
            return [n.payload for n in self.conn.notifies(timeout=0)]
        except psycopg.Error as exc:
            logger.warning("lost the LISTEN connection: %s", exc)
            self.close()
            return []

    def close(self) -> None:
        import psycopg

        if self.conn is not None:
            with contextlib.suppress(psycopg.Error):
                self.conn.close()
        self.conn = None


def listener_for_database() -> Listener | None:
    if connection.vendor != "postgresql":
        return None
    listener = Listener()
    listener.connect()  # on failure the supervisor polls, and tries again later
    return listener

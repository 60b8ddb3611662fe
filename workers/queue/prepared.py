"""Server-side prepared statements on Django's PostgreSQL connection (psycopg 3).

Imported only on PostgreSQL, so SQLite workers never load psycopg.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from django.db.backends.base.base import BaseDatabaseWrapper


class PreparedCursor(psycopg.Cursor[Any]):
    """Binds parameters on the server and prepares every statement it runs.

    psycopg keeps the prepared statements per connection (up to `prepared_max`) and
    prepares them again on a new connection.
    """

    def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None,
                binary: bool | None = None) -> PreparedCursor:
        super().execute(query, params, prepare=True, binary=binary)
        return self


def _plan_once(raw_connection: psycopg.Connection[Any]) -> None:
    """Keep one plan per prepared statement: PostgreSQL otherwise plans the claim anew at
    every call once it estimates its generic plan dearer than the first five custom ones,
    which it did, and planning the claim cost more than running it (0.3 to 0.6 ms of a
    0.5 to 1.1 ms claim; bench/README). The generic plans walk the claim index whatever
    the statistics say (tests/integration/test_claim_plan.py). Only prepared statements
    are planned by this setting, and only the hot path's are prepared. Set outside a
    transaction, where a rollback cannot undo it; inside one, at a later call."""
    if getattr(raw_connection, "crucible_generic_plans", False):
        return
    idle = raw_connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    if not (raw_connection.autocommit and idle):  # else a statement would begin one
        return
    raw_connection.execute("SET plan_cache_mode = force_generic_plan")
    raw_connection.crucible_generic_plans = True  # type: ignore[attr-defined]


@contextmanager
def prepared_cursor(connection: BaseDatabaseWrapper) -> Iterator[Any]:
    """Like ``connection.cursor()`` (errors wrapped; logged and wrapped by
    ``execute_wrapper``s when any are installed), but prepared on the server.

    With nothing to log or wrap, psycopg's cursor is used as it is: Django's wrapper's
    layers were a tenth of an ``.enqueue()``'s own time. A transaction an error broke is
    refused as Django refuses it."""
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    connection.validate_thread_sharing()
    raw_connection = connection.connection
    if raw_connection.prepare_threshold is None:
        # Django turns preparation off, and psycopg then ignores prepare=True. A threshold
        # nothing reaches leaves every other statement unprepared, as Django wants.
        raw_connection.prepare_threshold = sys.maxsize
    with connection.wrap_database_errors:
        _plan_once(raw_connection)
        raw: Any = PreparedCursor(raw_connection)
    if connection.queries_logged or connection.execute_wrappers:
        cursor = connection.make_debug_cursor(raw) if connection.queries_logged else (
            connection.make_cursor(raw))
        try:
            yield cursor
        finally:
            cursor.close()
        return
    try:
        connection.validate_no_broken_transaction()
        with connection.wrap_database_errors:
            yield raw
    finally:
        with connection.wrap_database_errors:
            raw.close()

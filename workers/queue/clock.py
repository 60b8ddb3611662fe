"""The database's clock: every deadline (lease, run_after, startup, stalled) is judged by it.

Nodes' clocks may be minutes apart; the database's is the one all of them share. On
SQLite, whose clock is the host's, "the database" is the one machine all workers run on.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Value
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Now

__all__ = ["Now", "ago", "later", "now", "sql_later", "sql_now"]


def later(seconds: float) -> CombinedExpression:
    """The database's time ``seconds`` from now, as an expression for queries and updates."""
    return Now() + Value(timedelta(seconds=seconds))


def ago(seconds: float) -> CombinedExpression:
    return Now() - Value(timedelta(seconds=seconds))


def now() -> datetime:
    """Read the database's clock (one statement)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sql_now(connection.vendor)}", [])  # [] unescapes %%
        row = cursor.fetchone()
    return parse(row[0])


def parse(value: Any) -> datetime:
    """A timestamp read by raw SQL: aware on PostgreSQL; naive UTC (or its text) on SQLite."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def sql_now(vendor: str) -> str:
    """The database's current time in raw SQL (``%`` doubled for parameter binding)."""
    if vendor == "postgresql":
        return "now()"
    return "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now')"


def sql_later(vendor: str) -> str:
    """The database's time a number of seconds (one ``%s`` parameter) from now."""
    if vendor == "postgresql":
        return "(now() + %s * interval '1 second')"
    return "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', printf('%%+.3f seconds', %s))"

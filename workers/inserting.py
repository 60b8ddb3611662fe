"""A task row written in one statement: the hot path of ``enqueue``.

Django's ``Model.objects.create`` builds the INSERT's SQL and prepares every one of the
row's columns on each call: a script that enqueued thousands of tasks one call at a time
spent half of its time there. Here the statement is built once per database, the columns
an enqueue never sets are written as their defaults' literals, and on PostgreSQL the
wake-up's NOTIFY rides in the same statement: one round trip, delivered at commit as
before (and not at all if the caller's transaction rolls back).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field
from django.utils import timezone

from .budget import LIVE_STATES, largest_sql
from .claim import hot_cursor, qmark
from .doorbell import channel
from .estimates import DEFAULT, LEARNED
from .models import MemoryProfile, Task

# What an enqueue sets; every other column gets its field's default.
GIVEN = (
    "state", "pending_dependencies", "func_path", "args", "kwargs", "queue", "priority",
    "max_attempts", "timeout", "memory_mb", "retry_backoff", "memory_estimate_mb",
    "memory_source", "memory_estimate_runs", "memory_scale", "memory_limit_mb", "cpus",
    "run_after", "created_at",
)
# What the statement itself works out when it reads the function's learned estimate.
ESTIMATED = ("memory_estimate_mb", "memory_source", "memory_estimate_runs")


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    given: tuple[tuple[str, Field[Any, Any] | None], ...]  # the field where a value needs preparing
    row: tuple[tuple[str | None, Any], ...]  # each column of a Task in order: given, or default
    names: tuple[str, ...]  # their attribute names


# Values an enqueue gives that the database takes as they are (validated, plain types).
AS_IS = (models.CharField, models.IntegerField, models.FloatField, models.BooleanField)


@functools.cache
def _plan(alias: str, *, estimated: bool = False) -> _Plan:
    db = connections[alias]
    fields = [f for f in Task._meta.concrete_fields if not f.primary_key]
    by_name = {f.attname: f for f in fields}
    names = [n for n in GIVEN if n not in ESTIMATED] if estimated else list(GIVEN)
    given = tuple(by_name[name] for name in names)
    rest = [f for f in fields if f.attname not in GIVEN]
    if any(f.has_db_default() or (f.has_default() and callable(f.default)) for f in rest):
        raise RuntimeError("a Task column's default is made per row: add it to GIVEN")
    quote = db.ops.quote_name
    chosen = [*given, *(by_name[n] for n in ESTIMATED)] if estimated else [*given]
    columns = ", ".join(quote(str(f.column)) for f in (*chosen, *rest))
    notify = ", pg_notify(%s, %s)" if db.vendor == "postgresql" else ""
    table = quote(Task._meta.db_table)
    if estimated:
        sql = (f"INSERT INTO {table} ({columns}) {_estimating_select(db, given, rest)}"
               f" RETURNING {quote(str(Task._meta.pk.column))}, {', '.join(ESTIMATED)}{notify}")
    else:
        values = ", ".join([*(["%s"] * len(given)), *(_default_sql(f, db) for f in rest)])
        sql = (f"INSERT INTO {table} ({columns}) VALUES ({values})"
               f" RETURNING {quote(str(Task._meta.pk.column))}{notify}")
    return _Plan(
        sql=sql,
        given=tuple((f.attname, None if isinstance(f, AS_IS) else f) for f in given),
        row=tuple((f.attname, None) if f.primary_key or f.attname in GIVEN
                  else (None, f.get_default()) for f in Task._meta.concrete_fields),
        names=tuple(f.attname for f in Task._meta.concrete_fields),
    )


def _execute(db: BaseDatabaseWrapper, sql: str, params: list[Any]) -> tuple[Any, ...] | None:
    """Run the INSERT: on SQLite on its own cursor, placeholders rewritten once (Django's
    wrapper rewrites them at every call), inside Django's error mapping and transaction."""
    if db.vendor != "sqlite":
        with hot_cursor(db) as cursor:
            cursor.execute(sql, params)
            found: tuple[Any, ...] | None = cursor.fetchone()
        return found
    db.ensure_connection()
    with db.wrap_database_errors:
        found = db.connection.execute(qmark(sql), params).fetchone()
    return found


def _default_sql(field: Field[Any, Any], db: BaseDatabaseWrapper) -> str:
    """A column's default as SQL text (typed on PostgreSQL): fewer parameters to bind."""
    value = field.get_db_prep_save(field.get_default(), db)
    if value is None:
        text = "NULL"
    elif isinstance(value, bool):
        text = "TRUE" if value else "FALSE"
    elif isinstance(value, int):
        text = str(int(value))  # PostgreSQL's backend wraps it (Int4)
    elif value == "":
        text = "''"
    else:
        raise RuntimeError(f"Task.{field.attname}'s default has no literal: add it to GIVEN")
    return f"CAST({text} AS {field.cast_db_type(db)})" if db.vendor == "postgresql" else text


def _estimating_select(db: BaseDatabaseWrapper, given: tuple[Field[Any, Any], ...],
                       rest: list[Field[Any, Any]]) -> str:
    """The row, with the function's learned estimate (its profile's, kept for calls that
    name no scale) or the default (one ``%s``). No row when the learned estimate is larger
    than every node could budget (the nodes running workers, else every node), unless
    forced (one ``%s``), or when no node is known: the caller then checks in Python."""
    quote = db.ops.quote_name

    def bound(field: Field[Any, Any]) -> str:  # PostgreSQL types a SELECT's parameters
        return f"CAST(%s AS {field.cast_db_type(db)})" if db.vendor == "postgresql" else "%s"

    force = "CAST(%s AS boolean)" if db.vendor == "postgresql" else "%s"
    return (
        f"SELECT {', '.join(bound(f) for f in given)}, COALESCE(p.estimate_mb, %s),"
        f" CASE WHEN p.estimate_mb IS NULL THEN '{DEFAULT}' ELSE '{LEARNED}' END,"
        f" COALESCE(p.estimate_runs, 0), {', '.join(_default_sql(f, db) for f in rest)}"
        f" FROM (SELECT 1) AS one LEFT JOIN {quote(MemoryProfile._meta.db_table)} AS p"
        f" ON p.func_path = %s"
        f" WHERE {force} OR p.estimate_mb IS NULL OR p.estimate_mb <= {largest_sql(db.alias)}"
    )


def insert(fields: dict[str, Any], *, wake: str) -> Task:
    """Write a task row of ``fields`` (exactly ``GIVEN`` but ``created_at``) and return it.
    ``wake``: the doorbell message; on PostgreSQL NOTIFYed by this very statement (other
    databases ring after commit: the caller's business)."""
    task = _insert(fields, wake, estimated=None)
    assert task is not None
    return task


def insert_estimated(fields: dict[str, Any], *, wake: str, default_mb: int,
                     force: bool) -> Task | None:
    """``insert`` for a call that declares no memory, names no scale and takes one CPU: the
    statement reads its function's learned estimate, else takes ``default_mb``. None, and
    nothing written, when that estimate is larger than every node (not ``force``d) or no
    node is known yet: the caller checks the way every submission is checked."""
    return _insert(fields, wake, estimated=(default_mb, force))


def _insert(fields: dict[str, Any], wake: str,
            estimated: tuple[int, bool] | None) -> Task | None:
    db: BaseDatabaseWrapper = connections[DEFAULT_DB_ALIAS]
    plan = _plan(db.alias, estimated=estimated is not None)
    given = {**fields, "created_at": timezone.now()}
    params = [given[name] if field is None else field.get_db_prep_save(given[name], db)
              for name, field in plan.given]
    if estimated is not None:
        default_mb, force = estimated
        params.extend([default_mb, given["func_path"], force, *LIVE_STATES])
    if db.vendor == "postgresql":
        params.extend([channel(wake), wake])
    row = _execute(db, plan.sql, params)
    if row is None:
        return None
    given["id"] = row[0]
    if estimated is not None:
        given.update(zip(ESTIMATED, row[1:4], strict=True))
    # Built as Django builds a row it read: positionally, which skips the defaults' lookup.
    return Task.from_db(db.alias, plan.names, [given[name] if name else default
                                               for name, default in plan.row])

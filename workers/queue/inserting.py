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
import itertools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field
from django.utils import timezone

from ..models import MemoryProfile, Task
from ..pool.budget import LIVE_STATES, largest_sql
from ..pool.estimates import DEFAULT, LEARNED
from .doorbell import channel
from .hotpath import hot_cursor, qmark

# What an enqueue sets; every other column gets its field's default.
GIVEN = (
    "state", "pending_dependencies", "func_path", "args", "kwargs", "queue", "priority",
    "max_attempts", "timeout", "memory_mb", "retry_backoff", "memory_estimate_mb",
    "memory_source", "memory_estimate_runs", "memory_scale", "memory_limit_mb", "cpus",
    "run_after", "created_at",
)
JSON_COLUMNS = ("args", "kwargs")  # bound as the JSON text the submission's check made
# What the statement itself works out when it reads the function's learned estimate.
ESTIMATED = ("memory_estimate_mb", "memory_source", "memory_estimate_runs")


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    into: str  # INSERT INTO the table (its columns)
    values: str  # one row's VALUES tuple
    defaults: tuple[str, ...]  # the literals of the columns an enqueue leaves at their default
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
    # A constant default is written as a literal (a default in the database as well is
    # the same value); one made per row, or by the database alone, must be given.
    if any(callable(f.default) if f.has_default() else f.has_db_default() for f in rest):
        raise RuntimeError("a Task column's default is made per row: add it to GIVEN")
    quote = db.ops.quote_name
    chosen = [*given, *(by_name[n] for n in ESTIMATED)] if estimated else [*given]
    columns = ", ".join(quote(str(f.column)) for f in (*chosen, *rest))
    notify = ", pg_notify(%s, %s)" if db.vendor == "postgresql" else ""
    table = quote(Task._meta.db_table)
    into = f"INSERT INTO {table} ({columns})"
    defaults = tuple(_default_sql(f, db) for f in rest)
    values = "(" + ", ".join([*(["%s"] * len(given)), *defaults]) + ")"
    if estimated:
        sql = (f"{into} {_estimating_select(db, given, rest)}"
               f" RETURNING {quote(str(Task._meta.pk.column))}, {', '.join(ESTIMATED)}{notify}")
    else:
        sql = f"{into} VALUES {values} RETURNING {quote(str(Task._meta.pk.column))}{notify}"
    return _Plan(
        sql=sql,
        into=into,
        values=values,
        defaults=defaults,
        given=tuple((f.attname, None if isinstance(f, AS_IS) or f.attname in JSON_COLUMNS
                     else f) for f in given),
        row=tuple((f.attname, None) if f.primary_key or f.attname in GIVEN
                  else (None, f.get_default()) for f in Task._meta.concrete_fields),
        names=tuple(f.attname for f in Task._meta.concrete_fields),
    )


def _execute(db: BaseDatabaseWrapper, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Run an INSERT, and return the rows it returns. On SQLite, when nothing logs or wraps
    queries, on its own cursor with placeholders rewritten once (Django's wrapper rewrites
    them at every call), inside Django's error mapping and transaction."""
    if db.vendor != "sqlite" or db.queries_logged or db.execute_wrappers:
        with hot_cursor(db) as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
    db.ensure_connection()
    db.validate_no_broken_transaction()
    with db.wrap_database_errors:
        rows: list[tuple[Any, ...]] = db.connection.execute(qmark(sql), params).fetchall()
    return rows


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


def insert(fields: dict[str, Any], texts: tuple[str, str], *, wake: str) -> Written:
    """Write a task row of ``fields`` (exactly ``GIVEN`` but ``created_at``): what it wrote,
    with its id and moment. ``texts``: the JSON of its args and kwargs, as
    ``spec.validate`` made it. ``wake``: the doorbell message; on PostgreSQL NOTIFYed by
    this very statement (other databases ring after commit: the caller's business)."""
    written = _insert(fields, texts, wake, estimated=None)
    assert written is not None
    return written


def insert_estimated(fields: dict[str, Any], texts: tuple[str, str], *, wake: str,
                     default_mb: int, force: bool) -> Written | None:
    """``insert`` for a call that declares no memory, names no scale and takes one CPU: the
    statement reads its function's learned estimate, else takes ``default_mb``. None, and
    nothing written, when that estimate is larger than every node (not ``force``d) or no
    node is known yet: the caller checks the way every submission is checked."""
    return _insert(fields, texts, wake, estimated=(default_mb, force))


def _insert(fields: dict[str, Any], texts: tuple[str, str], wake: str,
            estimated: tuple[int, bool] | None) -> Written | None:
    db: BaseDatabaseWrapper = connections[DEFAULT_DB_ALIAS]
    plan = _plan(db.alias, estimated=estimated is not None)
    given = {**fields, "created_at": timezone.now()}
    params = _params(plan, {**given, **dict(zip(JSON_COLUMNS, texts, strict=True))}, db)
    if estimated is not None:
        default_mb, force = estimated
        params.extend([default_mb, given["func_path"], force, *LIVE_STATES])
    if db.vendor == "postgresql":
        params.extend([channel(wake), wake])
    found = _execute(db, plan.sql, params)
    if not found:
        return None
    row = found[0]
    given["id"] = row[0]
    if estimated is not None:
        given.update(zip(ESTIMATED, row[1:4], strict=True))
    return Written(db.alias, given)


def _params(plan: _Plan, given: dict[str, Any], db: BaseDatabaseWrapper) -> list[Any]:
    return [given[name] if field is None else field.get_db_prep_save(given[name], db)
            for name, field in plan.given]


@dataclass(frozen=True, slots=True)
class Written:
    """A task row just written: the values given (and worked out by the statement), with
    its ``id`` and ``created_at``. ``task()`` builds its Task for a caller that wants one;
    Django's ``.enqueue()`` needs only the id and the moment."""

    alias: str
    values: dict[str, Any]

    @property
    def id(self) -> int:
        return int(self.values["id"])

    @property
    def created_at(self) -> datetime:
        created: datetime = self.values["created_at"]
        return created

    def task(self) -> Task:
        """The Task of the row, built as Django builds a row it read: positionally, which
        skips the defaults' lookup."""
        plan = _plan(self.alias)
        return Task.from_db(self.alias, plan.names, [self.values[name] if name else default
                                                     for name, default in plan.row])


# What ``insert_many`` is given of each row: ``GIVEN`` but the moment, which it sets.
MANY = tuple(name for name in GIVEN if name != "created_at")
# The most rows one SQLite INSERT of ``insert_many`` writes (it binds at most 32,766
# parameters a statement); PostgreSQL takes every row in one statement, a column an array.
MANY_ROWS = 1024


def insert_many(columns: dict[str, list[Any]], count: int) -> tuple[list[int], datetime]:
    """Write ``count`` task rows, given column by column (each of ``MANY``; ``args`` and
    ``kwargs`` as JSON text), in the caller's transaction: their ids in order, and the
    moment written as every row's ``created_at``. Nothing is rung: the caller wakes each
    queue's workers once, at commit."""
    db: BaseDatabaseWrapper = connections[DEFAULT_DB_ALIAS]
    created = timezone.now()
    if count == 0:
        return [], created
    if db.vendor == "postgresql":
        arrays = [_typed(name, columns[name]) for name in MANY]
        return [row[0] for row in _execute(db, _unnest_sql(db.alias), [created, *arrays])
                ], created
    adapt = db.ops.adapt_datetimefield_value
    moments = {"run_after": [adapt(v) for v in columns["run_after"]]}
    ordered = [moments.get(name, columns[name]) for name in MANY]
    rows = list(zip(*ordered, strict=True))
    at = adapt(created)
    ids: list[int] = []
    for start, size in _slices(count):
        params = [value for row in rows[start:start + size] for value in (*row, at)]
        ids.extend(row[0] for row in _execute(db, _values_sql(db.alias, size), params))
    return ids, created


def built(columns: dict[str, list[Any]], ids: list[int], created: datetime,
          values: dict[str, list[Any]]) -> list[Task]:
    """The Tasks ``insert_many`` wrote, with ``values`` (``args``, ``kwargs``) in place of
    their JSON text."""
    alias = connections[DEFAULT_DB_ALIAS].alias
    names = [*MANY, "created_at", "id"]
    merged = [values.get(name) or columns[name] for name in MANY]
    return [Written(alias, dict(zip(names, (*row, created, task_id), strict=True))).task()
            for *row, task_id in zip(*merged, ids, strict=True)]


_FLOATS = {f.attname for f in Task._meta.concrete_fields if isinstance(f, models.FloatField)}


def _typed(name: str, column: list[Any]) -> list[Any]:
    """A column as PostgreSQL's array of its type: psycopg refuses an array of ints and
    floats mixed (a float column given whole seconds)."""
    if name in _FLOATS:
        return [None if value is None else float(value) for value in column]
    return column


def _slices(total: int) -> list[tuple[int, int]]:
    """(start, size) of each SQLite statement: ``MANY_ROWS`` at a time, then powers of two,
    so that a process builds at most 11 statements."""
    full, rest = divmod(total, MANY_ROWS)
    sizes = [MANY_ROWS] * full + [1 << bit for bit in reversed(range(rest.bit_length()))
                                  if rest >> bit & 1]
    starts = itertools.accumulate(sizes, initial=0)  # one start more than sizes
    return list(zip(starts, sizes, strict=False))


@functools.cache
def _values_sql(alias: str, count: int) -> str:
    plan = _plan(alias)
    pk = connections[alias].ops.quote_name(str(Task._meta.pk.column))
    return f"{plan.into} VALUES {', '.join([plan.values] * count)} RETURNING {pk}"


@functools.cache
def _unnest_sql(alias: str) -> str:
    """PostgreSQL: every row in one statement of constant size, a column an array (one
    ``%s`` each, in ``MANY``'s order, after the moment's): a statement of thousands of
    ``VALUES`` rows costs the server more to parse than to write."""
    db = connections[alias]
    plan = _plan(alias)
    by_name = {f.attname: f for f in Task._meta.concrete_fields}
    fields = [by_name[name] for name in MANY]
    arrays = ", ".join(f"CAST(%s AS {_array_type(f, db)})" for f in fields)
    names = ", ".join(f"c{index}" for index in range(len(fields)))
    columns = ", ".join(f"u.c{index}" for index in range(len(fields)))
    pk = db.ops.quote_name(str(Task._meta.pk.column))
    return (f"{plan.into} SELECT {columns}, CAST(%s AS timestamp with time zone),"
            f" {', '.join(plan.defaults)} FROM unnest({arrays}) WITH ORDINALITY AS u({names}, n)"
            f" ORDER BY u.n RETURNING {pk}")


def _array_type(field: Field[Any, Any], db: BaseDatabaseWrapper) -> str:
    return "jsonb[]" if field.attname in JSON_COLUMNS else f"{field.cast_db_type(db)}[]"

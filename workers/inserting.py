"""A task row written in one statement: the hot path of ``enqueue``.

Django's ``Model.objects.create`` builds the INSERT's SQL and prepares every one of the
row's columns on each call: a script that enqueued thousands of tasks one call at a time
spent half of its time there. Here the statement is built once per database, the columns
an enqueue never sets are bound from their defaults, prepared once, and on PostgreSQL the
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

from .claim import hot_cursor
from .doorbell import channel
from .models import Task

# What an enqueue sets; every other column gets its field's default.
GIVEN = (
    "state", "pending_dependencies", "func_path", "args", "kwargs", "queue", "priority",
    "max_attempts", "timeout", "memory_mb", "retry_backoff", "memory_estimate_mb",
    "memory_source", "memory_estimate_runs", "memory_scale", "memory_limit_mb", "cpus",
    "run_after", "created_at",
)


@dataclass(frozen=True, slots=True)
class _Plan:
    sql: str
    given: tuple[tuple[str, Field[Any, Any] | None], ...]  # the field where a value needs preparing
    defaults: tuple[Any, ...]  # the other columns' defaults, prepared for the database
    row: tuple[tuple[str | None, Any], ...]  # each column of a Task in order: given, or default
    names: tuple[str, ...]  # their attribute names


# Values an enqueue gives that the database takes as they are (validated, plain types).
AS_IS = (models.CharField, models.IntegerField, models.FloatField, models.BooleanField)


@functools.cache
def _plan(alias: str) -> _Plan:
    db = connections[alias]
    fields = [f for f in Task._meta.concrete_fields if not f.primary_key]
    by_name = {f.attname: f for f in fields}
    given = tuple(by_name[name] for name in GIVEN)
    rest = [f for f in fields if f.attname not in GIVEN]
    if any(f.has_db_default() or (f.has_default() and callable(f.default)) for f in rest):
        raise RuntimeError("a Task column's default is made per row: add it to GIVEN")
    quote = db.ops.quote_name
    columns = ", ".join(quote(str(f.column)) for f in (*given, *rest))
    values = ", ".join(["%s"] * (len(given) + len(rest)))
    notify = ", pg_notify(%s, %s)" if db.vendor == "postgresql" else ""
    sql = (f"INSERT INTO {quote(Task._meta.db_table)} ({columns}) VALUES ({values})"
           f" RETURNING {quote(str(Task._meta.pk.column))}{notify}")
    return _Plan(
        sql=sql,
        given=tuple((f.attname, None if isinstance(f, AS_IS) else f) for f in given),
        defaults=tuple(f.get_db_prep_save(f.get_default(), db) for f in rest),
        row=tuple((f.attname, None) if f.primary_key or f.attname in GIVEN
                  else (None, f.get_default()) for f in Task._meta.concrete_fields),
        names=tuple(f.attname for f in Task._meta.concrete_fields),
    )


def insert(fields: dict[str, Any], *, wake: str) -> Task:
    """Write a task row of ``fields`` (exactly ``GIVEN`` but ``created_at``) and return it.
    ``wake``: the doorbell message; on PostgreSQL NOTIFYed by this very statement (other
    databases ring after commit: the caller's business)."""
    db: BaseDatabaseWrapper = connections[DEFAULT_DB_ALIAS]
    plan = _plan(db.alias)
    given = {**fields, "created_at": timezone.now()}
    params = [given[name] if field is None else field.get_db_prep_save(given[name], db)
              for name, field in plan.given]
    params.extend(plan.defaults)
    if db.vendor == "postgresql":
        params.extend([channel(wake), wake])
    with hot_cursor(db) as cursor:
        cursor.execute(plan.sql, params)
        given["id"] = cursor.fetchone()[0]
    # Built as Django builds a row it read: positionally, which skips the defaults' lookup.
    return Task.from_db(db.alias, plan.names, [given[name] if name else default
                                         for name, default in plan.row])

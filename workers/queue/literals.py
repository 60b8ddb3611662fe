"""Conditions written so that SQLite, too, takes the partial index meant for them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import CharField, Value
from django.db.models.lookups import Exact, In
from django.db.models.sql.compiler import SQLCompiler

COMMON = 0.9  # how often a partial index's condition holds, as SQLite is told


class Literal(Value):
    """A state name or a number in the statement's text instead of a bound parameter.

    SQLite uses a partial index (``task_finished_idx``: ``state IN ('SUCCEEDED', ...)``)
    only when the query repeats the index's condition with the same constants in its
    text: bound parameters are unknown when it plans, and Django binds every value.
    """

    def as_sql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper
    ) -> tuple[str, tuple[str | int, ...]]:
        value = self.value
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(f"not a literal: {value!r}")
        if isinstance(value, str) and not value.isidentifier():
            raise ValueError(f"only names are written literally, not {value!r}")
        return (repr(value) if isinstance(value, int) else f"'{value}'"), ()


def literals(values: Iterable[str | int]) -> list[Literal]:
    return [Literal(value) for value in values]


@CharField.register_lookup
class CommonIn(In):
    """``state__common_in=[...]``: a partial index's condition, in a filter.

    Without statistics (nothing runs ANALYZE on SQLite) SQLite takes an equality on an
    indexed column for the best filter there is: for ``state IN (<finished states>)`` it
    would read every finished task through ``task_state_idx``. Wrapped in
    ``likelihood(..., 0.9)`` the condition is known to hold for most rows, and SQLite
    ranges over the partial index's own column instead. Other databases get ``IN``.
    """

    lookup_name = "common_in"

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, Any]:
        sql, params = self.as_sql(compiler, connection)
        return f"likelihood({sql}, {COMMON})", params


@CharField.register_lookup
class CommonExact(Exact):
    """``state__common=Literal(...)``: ``common_in`` for one value (a partial index's
    ``state = '...'``), which SQLite matches against the index's condition as it is written."""

    lookup_name = "common"

    def get_rhs_op(self, connection: Any, rhs: str) -> str:
        return str(connection.operators["exact"] % rhs)  # an exact lookup's operator

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, Any]:
        sql, params = self.as_sql(compiler, connection)
        return f"likelihood({sql}, {COMMON})", params

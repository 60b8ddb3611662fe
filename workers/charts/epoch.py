"""Timestamps as seconds since 1970, computed by the database, the same way on both."""

from __future__ import annotations

from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import BigIntegerField, FloatField, Func
from django.db.models.sql.compiler import SQLCompiler


class MinuteStart(Func):
    """The start of the minute that holds a timestamp, in whole seconds since 1970.

    Exact on both databases. On SQLite the minute is cut from the stored text
    (``YYYY-MM-DD HH:MM``), so it agrees with the text comparisons of range filters
    even for a time a microsecond before the next minute.
    """

    output_field = BigIntegerField()

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, Any]:
        template = "CAST(strftime('%%%%s', substr(%(expressions)s, 1, 16)) AS INTEGER)"
        return self.as_sql(compiler, connection, template=template, **extra)

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, Any]:
        template = "EXTRACT(EPOCH FROM date_trunc('minute', %(expressions)s))::bigint"
        return self.as_sql(compiler, connection, template=template, **extra)


class EpochSeconds(Func):
    """A timestamp in (fractional) seconds since 1970, for differences between two."""

    output_field = FloatField()

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, Any]:
        template = "((julianday(%(expressions)s) - 2440587.5) * 86400.0)"
        return self.as_sql(compiler, connection, template=template, **extra)

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> tuple[str, Any]:
        template = "EXTRACT(EPOCH FROM %(expressions)s)::double precision"
        return self.as_sql(compiler, connection, template=template, **extra)

"""Moments on the database's clock, for deadlines that no node's clock may decide."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Expression
from django.db.models.functions import Now


def ago(seconds: float) -> Expression:
    """The database's ``now()`` minus ``seconds``, evaluated by the database in the query."""
    return Now() - timedelta(seconds=seconds)

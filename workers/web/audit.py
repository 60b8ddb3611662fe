"""Every operator action lands in Django's admin log: who, what, when, and whether forced."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import CHANGE, LogEntry
from django.db.models import Model


def record(user: Any, obj: Model, action: str, *, forced: bool = False, detail: str = "") -> None:
    """Write one admin-log line, e.g. ``abort worker 3`` or ``add worker 7 (forced)``."""
    if user is None or not getattr(user, "is_authenticated", False):
        return
    text = f"{action} {obj._meta.verbose_name} {obj.pk}"
    if forced:
        text += " (forced)"
    if detail:
        text += f": {detail}"
    LogEntry.objects.log_actions(
        user_id=user.pk,
        queryset=[obj],
        action_flag=CHANGE,
        change_message=text,
        single_object=True,
    )

"""Template filters of the task views, for templates whose context another module builds."""

from __future__ import annotations

from typing import Any

from django import template

from .. import tasklist

register = template.Library()


@register.filter
def eta(task: Any) -> str:
    """A running task's ETA from its ``progress`` and ``elapsed`` seconds (a TaskView)."""
    return tasklist.eta_text(getattr(task, "progress", None), getattr(task, "elapsed", 0.0))

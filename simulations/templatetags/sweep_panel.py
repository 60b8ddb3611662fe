"""``{% running_sweeps as sweeps %}``: the panel's sweep progress, without touching its view."""

from __future__ import annotations

from django import template

from .. import progress

register = template.Library()


@register.simple_tag
def running_sweeps() -> progress.RunningSweeps:
    return progress.running_sweeps()

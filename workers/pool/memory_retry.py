"""A task stopped for memory (its limit, or the kernel's OOM killer) is retried with more."""

from __future__ import annotations

import math

from django.db.models import Max

from .. import conf
from ..models import Task
from ..models.node import Node
from ..states import Outcome

MEMORY_OUTCOMES = frozenset({Outcome.MEMORY_LIMIT, Outcome.OOM_KILLED})


def raised(task: Task) -> dict[str, int]:
    """The columns its next attempt runs with: estimate and limit (its own, else
    WORKER_MEMORY_LIMIT_MB) times WORKER_MEMORY_RETRY_FACTOR, capped by the largest node
    budget. A task that had no limit gets none."""
    settings = conf.get()
    cap = largest_budget()
    fields = {"memory_estimate_mb": times(task.memory_estimate_mb, settings.memory_retry_factor,
                                          cap)}
    limit = task.memory_limit_mb or settings.memory_limit_mb
    if limit:
        fields["memory_limit_mb"] = times(limit, settings.memory_retry_factor, cap)
    return fields


def times(mb: int, factor: float, cap: int | None) -> int:
    """``mb`` times ``factor`` rounded up, never above ``cap`` nor below ``mb``."""
    grown = math.ceil(mb * factor)
    return max(mb, min(grown, cap)) if cap else grown


def largest_budget() -> int | None:
    budget: int | None = Node.objects.aggregate(largest=Max("memory_mb"))["largest"]
    return budget

"""How much memory a task is expected to need: the figure the scheduler reserves for it.

:func:`estimate` is called once, when a task is enqueued (and again when an operator
retries it); its answer is stored on the task (``memory_estimate_mb``, ``memory_source``)
and every claim compares that stored figure with what its node has left.

Order: the task's own ``memory_mb`` (declared); else a figure learned from measured peaks
of earlier runs of the same function (learned); else WORKER_MEMORY_PER_TASK_MB (default).
The learned part is filled in by the executor side of issue 10 (:func:`_learned`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import conf
from . import learning

DECLARED = "declared"
LEARNED = "learned"
DEFAULT = "default"
SOURCES = (DECLARED, LEARNED, DEFAULT)

__all__ = ["DECLARED", "DEFAULT", "LEARNED", "SOURCES", "Estimate", "estimate"]


@dataclass(frozen=True, slots=True)
class Estimate:
    """``mb`` megabytes, from ``source``; ``runs`` is how many measured runs a learned one
    rests on (0 otherwise); ``scale`` is what the task's memory grows with, if its function
    names one (stored on the task, so that its measured peak is learned per unit of it)."""

    mb: int
    source: str
    runs: int = 0
    scale: float | None = None

    def describe(self) -> str:
        """``declared``, ``learned from 5 runs`` or ``default``, as pages show it."""
        if self.source == LEARNED:
            return f"learned from {self.runs} run{'' if self.runs == 1 else 's'}"
        return self.source


def estimate(func_path: str, kwargs: dict[str, Any], declared_mb: int | None, *,
             scale: float | None = None) -> Estimate:
    """The memory to reserve for a call of ``func_path`` with ``kwargs``. ``scale``: the
    call's scale when it is known already (a retried task's, measured at its submission:
    the process that retries it may not have the measure of its kind)."""
    if scale is None:
        scale = learning.scale_of(func_path, kwargs)
    if declared_mb is not None:
        return Estimate(declared_mb, DECLARED, scale=scale)
    learned = learning.learned(func_path, scale)
    if learned is not None:
        return Estimate(learned.mb, LEARNED, learned.runs, scale)
    return Estimate(conf.get().memory_per_task_mb, DEFAULT, scale=scale)

"""How far the sweeps that are still going are, for the workers' panel: one bounded query."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q

from workers.states import FINISHED_TASK_STATES, TaskState

from .models import Sweep

SHOWN = 10
ENDED_BADLY = (TaskState.FAILED, TaskState.CANCELLED)


@dataclass(frozen=True, slots=True)
class SweepProgress:
    sweep_id: int
    title: str
    total: int
    done: int  # points that ended, however
    failed: int  # of those, failed or cancelled
    summary_state: str

    @property
    def percent(self) -> int:
        return round(100 * self.done / self.total) if self.total else 0


@dataclass(frozen=True, slots=True)
class RunningSweeps:
    rows: list[SweepProgress]
    more: bool  # more are going than are shown


def running_sweeps(shown: int = SHOWN) -> RunningSweeps:
    """The newest sweeps whose summary step has not ended, with their points' counts."""
    going = (
        Sweep.objects.filter(summary_task__isnull=False)
        .exclude(summary_task__state__in=FINISHED_TASK_STATES)
        .select_related("summary_task")
        .annotate(
            total=Count("simulations"),
            done=Count("simulations", filter=Q(simulations__task__state__in=FINISHED_TASK_STATES)),
            failed=Count("simulations", filter=Q(simulations__task__state__in=ENDED_BADLY)),
        )
        .order_by("-pk")
    )
    found = list(going[: shown + 1])
    return RunningSweeps([_row(sweep) for sweep in found[:shown]], more=len(found) > shown)


def _row(sweep: Sweep) -> SweepProgress:
    counts = {name: int(getattr(sweep, name)) for name in ("total", "done", "failed")}
    return SweepProgress(sweep.pk, str(sweep), summary_state=sweep.state, **counts)

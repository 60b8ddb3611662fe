"""Follow tasks to their end, for ``simulate --wait``: a text progress bar with an ETA from
the progress rate (until following has one, the running attempts' own), one line of at most
79 columns (a terminal of 80 redraws it in place)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from django.utils import timezone

from workers.models import Task, Worker
from workers.states import ACTIVE_WORKER_STATES, FINISHED_TASK_STATES, TaskState
from workers.web import tasklist

from . import terminal

BAR_WIDTH = 20
LINE_WIDTH = terminal.WIDTH - 1
MIN_RATE_SECONDS = 2.0  # progress measured over less time is noise, not a rate


@dataclass(frozen=True, slots=True)
class Snapshot:
    fraction: float
    states: Counter[str]
    message: str = ""
    failures: list[tuple[int, str]] = field(default_factory=list)
    attempt_eta: float | None = None  # from the running attempts' own rates, at once

    @property
    def total(self) -> int:
        return sum(self.states.values())

    @property
    def finished(self) -> bool:
        return sum(self.states[state] for state in FINISHED_TASK_STATES) == self.total

    @property
    def succeeded(self) -> bool:
        return self.states[TaskState.SUCCEEDED] == self.total


def snapshot(task_ids: list[int]) -> Snapshot:
    tasks = list(Task.objects.filter(pk__in=task_ids).order_by("pk"))
    done = {TaskState.SUCCEEDED}
    fractions = [1.0 if t.state in done else (t.progress or 0.0) for t in tasks]
    running = [t for t in tasks if t.state == TaskState.RUNNING]
    failures = [(t.pk, f"{t.state.lower()}: {t.error}") for t in tasks
                if t.state in (TaskState.FAILED, TaskState.CANCELLED)]
    return Snapshot(
        fraction=sum(fractions) / len(fractions) if fractions else 0.0,
        states=Counter(t.state for t in tasks),
        message=running[0].progress_message if len(running) == 1 else "",
        failures=failures,
        attempt_eta=_attempts_eta(running),
    )


def _attempts_eta(running: list[Task]) -> float | None:
    """The longest of the running attempts' ETAs, each from its progress since it began."""
    now = timezone.now()
    etas = [tasklist.eta(t.progress, (now - t.last_attempted_at).total_seconds())
            for t in running if t.last_attempted_at is not None]
    known = [left for left in etas if left is not None]
    return max(known) if known else None


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    filled = round(max(0.0, min(fraction, 1.0)) * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}%"


@dataclass(frozen=True, slots=True)
class Rate:
    """Where following began: the progress made since then, over the time it took."""

    started: float
    fraction: float

    def eta(self, fraction: float, now: float) -> float | None:
        """Seconds left at the rate so far; None until there is a rate to go by."""
        gained, elapsed = fraction - self.fraction, now - self.started
        if gained <= 0 or elapsed < MIN_RATE_SECONDS or fraction >= 1:
            return None
        return elapsed * (1 - fraction) / gained


def line(snap: Snapshot, eta: float | None = None) -> str:
    counts = ", ".join(f"{count} {state.lower()}" for state, count in sorted(snap.states.items()))
    parts = [bar(snap.fraction), f"ETA {terminal.duration(eta)}" if eta is not None else "",
             counts, snap.message]  # what matters most first: a cut takes the end
    return terminal.cut("  ".join(part for part in parts if part), LINE_WIDTH)


def workers_available() -> bool:
    return Worker.objects.filter(state__in=ACTIVE_WORKER_STATES).exists()


def follow(task_ids: list[int], write: Callable[[str, str], None], poll: float = 0.5, *,
           live: bool = False) -> Snapshot:
    """Report progress until every task finished; return the final snapshot.

    ``live`` (a terminal): redraw one line on every change. Otherwise write a line only
    when the percentage or the states change, so that logs stay short.
    """
    last: object = None
    rate: Rate | None = None
    while True:
        snap = snapshot(task_ids)
        now = time.monotonic()
        rate = rate or Rate(now, snap.fraction)
        eta = rate.eta(snap.fraction, now)
        text = line(snap, snap.attempt_eta if eta is None and not snap.finished else eta)
        key = text if live else (round(snap.fraction * 100), sorted(snap.states.items()))
        if key != last:
            write(text, "\r" if live else "\n")
            last = key
        if snap.finished:
            if live:
                write("", "\n")
            return snap
        time.sleep(poll)

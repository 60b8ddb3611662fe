"""Follow tasks to their end, for ``simulate --wait``: a text progress bar, no extra library."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from workers.models import Task, Worker
from workers.states import ACTIVE_WORKER_STATES, FINISHED_TASK_STATES, TaskState

BAR_WIDTH = 30


@dataclass(frozen=True, slots=True)
class Snapshot:
    fraction: float
    states: Counter[str]
    message: str = ""
    failures: list[tuple[int, str]] = field(default_factory=list)

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
    )


def bar(fraction: float, width: int = BAR_WIDTH) -> str:
    filled = round(max(0.0, min(fraction, 1.0)) * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}%"


def line(snap: Snapshot) -> str:
    counts = ", ".join(f"{count} {state.lower()}" for state, count in sorted(snap.states.items()))
    text = f"{bar(snap.fraction)}  {counts}"
    return f"{text}  {snap.message}" if snap.message else text


def workers_available() -> bool:
    return Worker.objects.filter(state__in=ACTIVE_WORKER_STATES).exists()


def follow(task_ids: list[int], write: Callable[[str, str], None], poll: float = 0.5, *,
           live: bool = False) -> Snapshot:
    """Report progress until every task finished; return the final snapshot.

    ``live`` (a terminal): redraw one line on every change. Otherwise write a line only
    when the percentage or the states change, so that logs stay short.
    """
    last: object = None
    while True:
        snap = snapshot(task_ids)
        text = line(snap)
        key = text if live else (round(snap.fraction * 100), sorted(snap.states.items()))
        if key != last:
            write(text, "\r" if live else "\n")
            last = key
        if snap.finished:
            if live:
                write("", "\n")
            return snap
        time.sleep(poll)

"""``manage.py dashboard``: workers, runs with progress bars, queue depth, recent failures,
as ``rich`` renderables. Reads only: the panel's snapshot and the runs' reading."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..models import Run, Task
from ..models.run import ACTIVE_RUN_STATES
from ..states import TaskState
from ..web import status
from . import reading, text

RECENT_RUNS = 8
RECENT_FAILURES = 5
STATE_STYLE = {"RUNNING": "green", "STARTING": "blue", "DRAINING": "yellow", "DEAD": "dim",
               "FAILED": "red", "PAUSED": "yellow", "CREATED": "blue", "COMPLETED": "green",
               "CANCELLED": "dim"}


@dataclass(frozen=True, slots=True)
class Screen:
    snapshot: status.Snapshot
    runs: list[tuple[Run, dict[str, int]]]
    failures: list[Task]
    summary: reading.Summary


def gather() -> Screen:
    active = list(Run.objects.filter(state__in=ACTIVE_RUN_STATES).order_by("id"))
    recent = list(Run.objects.exclude(state__in=ACTIVE_RUN_STATES).order_by("-id")[
        :max(RECENT_RUNS - len(active), 0)])
    failures = list(Task.objects.filter(state=TaskState.FAILED).exclude(finished_at=None)
                    .order_by("-finished_at")[:RECENT_FAILURES])
    return Screen(status.snapshot(), [(run, reading.counts(run)) for run in active + recent],
                  failures, reading.summary())


def _state(value: str) -> Text:
    return Text(value.lower(), style=STATE_STYLE.get(value, ""))


def _workers(screen: Screen) -> Table:
    table = Table(title="Workers", expand=True, title_justify="left")
    for column in ("id", "state", "node", "task", "rss MB", "heartbeat"):
        table.add_column(column)
    for worker in screen.snapshot.active:
        task = f"{worker.task.id} {worker.task.func_path.rpartition('.')[2]}" if worker.task \
            else "idle"
        rss = f"{worker.rss_bytes / 2**20:.0f}" if worker.rss_bytes else "-"
        beat = f"{worker.heartbeat_age:.0f}s" if worker.heartbeat_age is not None else "-"
        table.add_row(str(worker.id), _state(worker.state), worker.node, task, rss, beat)
    return table


def _runs(screen: Screen, compact: bool) -> Table:
    table = Table(title="Runs", expand=True, title_justify="left")
    for column in ("id", "name", "state", "progress", "done"):
        table.add_column(column)
    for run, counts in screen.runs[:3] if compact else screen.runs:
        total = sum(counts.values())
        done = sum(n for state, n in counts.items() if state not in ("WAITING", "QUEUED",
                                                                      "RUNNING"))
        table.add_row(str(run.pk), run.name, _state(run.state),
                      ProgressBar(total=max(total, 1), completed=done, width=24),
                      f"{done}/{total}")
    return table


def _queues(screen: Screen) -> Table:
    table = Table(title="Queues", expand=True, title_justify="left")
    for column in ("queue", "waiting", "queued", "running", "failed 1h"):
        table.add_column(column)
    for name, counts in sorted(screen.snapshot.queues.items()):
        label = f"{name} (paused)" if name in screen.snapshot.paused else name
        table.add_row(label, *(str(counts.get(k, 0)) for k in (
            "waiting", "queued", "running", "failed_last_hour")))
    return table


def _failures(screen: Screen) -> Table:
    table = Table(title="Recent failures", expand=True, title_justify="left")
    for column in ("task", "function", "error"):
        table.add_column(column)
    for task in screen.failures:
        table.add_row(str(task.pk), task.func_path.rpartition(".")[2],
                      (task.error.splitlines() or [""])[0][:80])
    return table


def render(screen: Screen, *, compact: bool = False) -> RenderableType:
    head = Text("\n".join(text.summary(screen.summary).split(" · ")), style="bold")
    parts: list[RenderableType] = [head, _workers(screen), _runs(screen, compact)]
    if not compact:
        parts += [_queues(screen), _failures(screen)]
    return Panel(Group(*parts), title="Crucible", subtitle=screen.snapshot.generated_at
                 .strftime("%H:%M:%S"))

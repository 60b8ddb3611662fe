"""Runs as people read them: a run with each task's name, state and dependencies; lists;
the pool at a glance. Reads only."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, Exists, OuterRef, Q

from .. import conf
from ..models import Run, Task, TaskDependency, Worker
from ..models.run import ACTIVE_RUN_STATES
from ..queue import clock
from ..states import ACTIVE_WORKER_STATES, TaskState
from . import locks
from .errors import RunNotFound
from .gate import SKIPPED, UNFINISHED


@dataclass(frozen=True, slots=True)
class TaskLine:
    id: int
    name: str
    state: str
    depends_on: list[str]
    worker_id: int | None
    node: str
    attempt: int
    error: str
    started_at: datetime | None
    finished_at: datetime | None
    waiting_for: str = ""  # the lock key it waits for, and who holds it

    @property
    def skipped(self) -> bool:
        return self.state == TaskState.CANCELLED and self.error.startswith(SKIPPED)


@dataclass(frozen=True, slots=True)
class RunReport:
    run: Run
    tasks: list[TaskLine]
    counts: dict[str, int] = field(default_factory=dict)
    waiting_for: str = ""  # the run's own lock key it waits for (CREATED), and its holder

    @property
    def done(self) -> int:
        return sum(n for state, n in self.counts.items() if state not in UNFINISHED)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def get(run_id: int) -> Run:
    try:
        return Run.objects.get(pk=run_id)
    except Run.DoesNotExist:
        raise RunNotFound(f"no run with id {run_id}") from None


def _predecessors(run: Run) -> dict[int, list[str]]:
    found: dict[int, list[str]] = defaultdict(list)
    edges = TaskDependency.objects.filter(task__run=run).order_by("depends_on_id")
    for task_id, name in edges.values_list("task_id", "depends_on__name"):
        found[task_id].append(name)
    return found


def counts(run: Run) -> dict[str, int]:
    rows = Task.objects.filter(run=run).order_by().values("state").annotate(n=Count("pk"))
    return {row["state"]: row["n"] for row in rows}


def report(run_id: int) -> RunReport:
    run = get(run_id)
    before = _predecessors(run)
    rows = Task.objects.filter(run=run).order_by("id").values_list(
        "pk", "name", "state", "worker_id", "worker__node", "attempt", "error", "started_at",
        "finished_at")
    waits = locks.waiting_for(run) if run.task_locks or run.locks else {}
    lines = [TaskLine(pk, name, state, before.get(pk, []), worker, node or "", attempt,
                      error, started, finished,
                      waits.get(pk, "") if state == TaskState.WAITING else "")
             for pk, name, state, worker, node, attempt, error, started, finished in rows]
    tally: dict[str, int] = defaultdict(int)
    for line in lines:
        tally[line.state] += 1
    return RunReport(run, lines, dict(tally), waits.get(None, ""))


def listing(states: list[str] | None = None, limit: int = 50) -> list[tuple[Run, dict[str, int]]]:
    runs = Run.objects.order_by("-id")
    if states:
        runs = runs.filter(state__in=states)
    return [(run, counts(run)) for run in runs[:limit]]


@dataclass(frozen=True, slots=True)
class Summary:
    idle: int
    busy: int
    offline: int
    active_runs: int
    total_runs: int
    completed: int
    failed: int
    queued: int
    running: int

    @property
    def utilization(self) -> float:
        live = self.idle + self.busy
        return self.busy / live if live else 0.0


def summary() -> Summary:
    """The pool in one block: active workers busy, idle, or offline (no heartbeat within
    WORKER_STALLED_AFTER); runs; tasks by outcome."""
    busy_q = Task.objects.filter(worker=OuterRef("pk"), state=TaskState.RUNNING)
    active = Worker.objects.filter(state__in=ACTIVE_WORKER_STATES)
    silent = Q(last_heartbeat__lt=clock.ago(conf.get().stalled_after)) | Q(
        last_heartbeat__isnull=True, created_at__lt=clock.ago(conf.get().stalled_after))
    offline = active.filter(silent).count()
    live = active.exclude(silent)
    busy = live.filter(Exists(busy_q)).count()
    tasks = {row["state"]: row["n"]
             for row in Task.objects.order_by().values("state").annotate(n=Count("pk"))}
    return Summary(
        idle=live.count() - busy, busy=busy, offline=offline,
        active_runs=Run.objects.filter(state__in=ACTIVE_RUN_STATES).count(),
        total_runs=Run.objects.count(),
        completed=tasks.get(TaskState.SUCCEEDED, 0),
        failed=tasks.get(TaskState.FAILED, 0),
        queued=tasks.get(TaskState.QUEUED, 0) + tasks.get(TaskState.WAITING, 0),
        running=tasks.get(TaskState.RUNNING, 0),
    )

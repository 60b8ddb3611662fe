"""One snapshot of the pool for the panel and the JSON API, in a fixed number of queries."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count
from django.utils import timezone

from .. import conf
from ..models import Heartbeat, PausedQueue, Task, TaskQuerySet, Worker
from ..pool import admission, processes
from ..queue.clock import ago
from ..queue.literals import literals
from ..states import ACTIVE_WORKER_STATES, FINISHED_TASK_STATES, TaskState, WorkerState

RECENT = timedelta(hours=1)


class Readable:
    """Lets Django templates read attributes by subscription.

    The template engine tries ``obj[name]`` before ``getattr``; for a plain dataclass that
    raises and is caught for every variable, which made the 64-card panel twice as slow.
    """

    __slots__ = ()

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)
SPARKLINE_SAMPLES = 30
# A worker's first heartbeat measures its start-up (importing Django, forking the executor),
# not the worker at work: its CPU is shown from the second one, which spans a whole interval.
CPU_SHOWN_FROM_SAMPLE = 2
MAX_ENDED_SHOWN = 16


@dataclass(frozen=True, slots=True)
class TaskView(Readable):
    id: int
    func_path: str
    attempt: int
    max_attempts: int
    started_at: datetime | None
    elapsed: float
    progress: float | None
    progress_message: str
    memory_estimate_mb: int = 0
    memory_source: str = ""
    memory_estimate_runs: int = 0


@dataclass(frozen=True, slots=True)
class WorkerView(Readable):
    id: int
    state: str
    pid: int | None
    node: str
    queues: list[str]
    spawned: bool
    rss_bytes: int | None
    cpu_percent: float | None
    task_rss_bytes: int | None
    last_heartbeat: datetime | None
    heartbeat_age: float | None
    started_at: datetime | None
    stopped_at: datetime | None
    task: TaskView | None
    samples: list[int]
    warnings: list[str]
    failure_reason: str
    exit_code: int | None
    log_tail: str
    draining: bool
    aborting: bool

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_WORKER_STATES


@dataclass(frozen=True, slots=True)
class Snapshot:
    generated_at: datetime
    workers: list[WorkerView]
    admission: admission.Admission
    queues: dict[str, dict[str, int]] = field(default_factory=dict)
    paused: frozenset[str] = frozenset()  # queues no worker claims from until resumed

    @property
    def active(self) -> list[WorkerView]:
        return [worker for worker in self.workers if worker.is_active]


def _workers(now: datetime) -> list[Worker]:
    active = list(Worker.objects.active().order_by("id"))
    # A worker that ends between the two reads is shown once, as it was first read.
    ended = Worker.objects.filter(
        state__in=[WorkerState.DEAD, WorkerState.FAILED], stopped_at__gte=now - RECENT
    ).exclude(pk__in=[worker.pk for worker in active]).order_by("-stopped_at")[:MAX_ENDED_SHOWN]
    return active + list(ended)


def _running_tasks(worker_ids: list[int]) -> dict[int, Task]:
    # a worker running short tasks together holds one share: the others show once begun
    running = Task.objects.running().filter(worker_id__in=worker_ids, held=False).only(
        "id", "func_path", "attempt", "attempt_base", "max_attempts", "last_attempted_at",
        "progress", "progress_message", "worker_id", "memory_estimate_mb", "memory_source",
        "memory_estimate_runs",
    )
    return {task.worker_id: task for task in running if task.worker_id is not None}


def _samples(worker_ids: list[int], now: datetime) -> dict[int, list[int]]:
    window = now - timedelta(seconds=conf.get().heartbeat_interval * (SPARKLINE_SAMPLES + 1))
    rows = Heartbeat.objects.filter(worker_id__in=worker_ids, at__gte=window).order_by("at")
    series: dict[int, list[int]] = defaultdict(list)
    for worker_id, rss in rows.values_list("worker_id", "rss_bytes"):
        series[worker_id].append(rss)
    return {key: values[-SPARKLINE_SAMPLES:] for key, values in series.items()}


def _no_tasks() -> dict[str, int]:
    return {"waiting": 0, "queued": 0, "running": 0, "failed_last_hour": 0}


def queue_counts(shown: Collection[str] = ()) -> dict[str, dict[str, int]]:
    """Each queue's tasks by state, for queues with work or a failure in the last hour,
    and for ``shown`` ones even when empty: paused ones, so that they can be resumed, and
    those live workers serve, so that they can be paused before work arrives."""
    counts: dict[str, dict[str, int]] = defaultdict(_no_tasks)
    counts.update((name, _no_tasks()) for name in shown)
    live = Task.objects.filter(
        state__in=[TaskState.WAITING, TaskState.QUEUED, TaskState.RUNNING]
    ).values("queue", "state").annotate(n=Count("*"))  # "*": PostgreSQL reads the index only
    for row in live:
        counts[row["queue"]][str(row["state"]).lower()] = row["n"]
    failed = failed_since(RECENT.total_seconds())
    for failures in failed.values("queue").annotate(n=Count("*")):
        counts[failures["queue"]]["failed_last_hour"] = failures["n"]
    return dict(sorted(counts.items()))


def failed_since(seconds: float) -> TaskQuerySet:
    """Tasks that failed within ``seconds`` by the database's clock, through task_finished_idx.

    The index covers the finished states, so the query names them in its text (SQLite needs
    that to use it); FAILED is then told apart by excluding the others, because ``state = 'FAILED'``
    would tempt a planner into the state index: every failure ever, not the last hour's.
    """
    recent = Task.objects.filter(
        state__common_in=literals(FINISHED_TASK_STATES), finished_at__gte=ago(seconds)
    )
    return recent.exclude(state__in=[s for s in FINISHED_TASK_STATES if s != TaskState.FAILED])


def _warnings(worker: Worker, age: float | None, local: str) -> list[str]:
    settings = conf.get()
    found = []
    if worker.state in (WorkerState.RUNNING, WorkerState.DRAINING):
        if age is not None and age > settings.stalled_after:
            found.append(f"Stalled: no heartbeat for {age:.0f} s")
        if worker.node == local and not processes.is_worker_process(
            worker.pid, worker.process_started_at
        ):
            found.append("Process gone")
    if worker.state == WorkerState.DRAINING or (worker.drain_requested_at and worker.is_active):
        found.append("Draining: finishes its task, then stops")
    if worker.abort_requested_at and worker.is_active:
        found.append("Abort requested")
    return found


def _task_view(task: Task | None, now: datetime) -> TaskView | None:
    if task is None:
        return None
    started = task.last_attempted_at
    return TaskView(
        id=task.pk,
        func_path=task.func_path,
        attempt=task.attempt - task.attempt_base,
        max_attempts=task.max_attempts,
        started_at=started,
        elapsed=(now - started).total_seconds() if started else 0.0,
        progress=task.progress,
        progress_message=task.progress_message,
        memory_estimate_mb=task.memory_estimate_mb,
        memory_source=task.memory_source,
        memory_estimate_runs=task.memory_estimate_runs,
    )


def _view(worker: Worker, task: Task | None, samples: list[int], now: datetime) -> WorkerView:
    age = (now - worker.last_heartbeat).total_seconds() if worker.last_heartbeat else None
    return WorkerView(
        id=worker.pk,
        state=worker.state,
        pid=worker.pid,
        node=worker.node,
        queues=list(worker.queues),
        spawned=worker.spawned,
        rss_bytes=worker.rss_bytes,
        cpu_percent=worker.cpu_percent if len(samples) >= CPU_SHOWN_FROM_SAMPLE else None,
        task_rss_bytes=worker.task_rss_bytes,
        last_heartbeat=worker.last_heartbeat,
        heartbeat_age=age,
        started_at=worker.started_at,
        stopped_at=worker.stopped_at,
        task=_task_view(task, now),
        samples=samples,
        warnings=_warnings(worker, age, conf.get().node_address),
        failure_reason=worker.failure_reason,
        exit_code=worker.exit_code,
        log_tail=worker.log_tail,
        draining=worker.drain_requested_at is not None,
        aborting=worker.abort_requested_at is not None,
    )


def snapshot() -> Snapshot:
    now = timezone.now()
    rows = _workers(now)
    ids = [row.pk for row in rows]
    tasks = _running_tasks(ids)
    samples = _samples(ids, now)
    views = [_view(row, tasks.get(row.pk), samples.get(row.pk, []), now) for row in rows]
    paused = frozenset(PausedQueue.objects.values_list("name", flat=True))
    served = {name for row in rows if row.state in ACTIVE_WORKER_STATES for name in row.queues}
    return Snapshot(generated_at=now, workers=views, admission=admission.check(),
                    queues=queue_counts(paused | served), paused=paused)


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def task_json(view: TaskView | None) -> dict[str, Any] | None:
    if view is None:
        return None
    return {
        "task_id": view.id,
        "func_path": view.func_path,
        "attempt": view.attempt,
        "max_attempts": view.max_attempts,
        "started_at": iso(view.started_at),
        "elapsed": round(view.elapsed, 3),
        "progress": view.progress,
        "progress_message": view.progress_message,
    }


def worker_json(view: WorkerView) -> dict[str, Any]:
    return {
        "worker_id": view.id,
        "pid": view.pid,
        "state": view.state,
        "node": view.node,
        "queues": view.queues,
        "heartbeat": iso(view.last_heartbeat),
        "heartbeat_age": view.heartbeat_age,
        "memory": view.rss_bytes,
        "cpu": view.cpu_percent,
        "task_memory": view.task_rss_bytes,
        "started_at": iso(view.started_at),
        "stopped_at": iso(view.stopped_at),
        "task": task_json(view.task),
        "memory_samples": view.samples,
        "warnings": view.warnings,
        "failure_reason": view.failure_reason,
        "exit_code": view.exit_code,
    }


def to_json(snap: Snapshot) -> dict[str, Any]:
    """The body of GET /api/workers/status/: bytes for memory, ISO 8601 UTC for times."""
    adm = snap.admission
    return {
        "generated_at": iso(snap.generated_at),
        "workers": [worker_json(view) for view in snap.workers],
        "limits": {
            "admissible": adm.admissible,
            "active": adm.active,
            "can_add": adm.can_add,
            "reason": adm.reason,
            "by": adm.limits,
        },
        "memory": {
            "total": adm.memory.total,
            "available": adm.memory.available,
            "percent": adm.memory.percent,
        },
        "tasks_memory": {
            "budget_mb": adm.budget_mb,
            "committed_mb": adm.load.committed_mb,
            "running": adm.load.busy,
            "measured": adm.load.tasks_rss,
            "next_task_mb": adm.need_mb,
            "next_task_id": adm.next_task.id if adm.next_task else None,
            "waiting": adm.waiting,
        },
        "queue": {name: {**counts, "paused": name in snap.paused}
                  for name, counts in snap.queues.items()},
    }

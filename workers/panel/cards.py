"""What the panel shows, computed from a status snapshot: no queries, no I/O, easy to test."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from ..pool.admission import Admission
from ..states import WorkerState
from ..web.durations import words
from ..web.status import Readable, Snapshot, TaskView, WorkerView

DASH = "\u2013"  # shown for a missing value
SPARK_WIDTH = 160
SPARK_HEIGHT = 36
SPARK_PAD = 2
MIN_SPAN_OF_PEAK = 0.1
MEMORY_WARN_PERCENT = 75.0
MEMORY_CRIT_PERCENT = 90.0

LIMIT_LABELS = {"max_count": "max count", "cores": "cores", "memory": "memory"}
# Who allows how many, in a sentence: "memory allows 2", "the cores allow 4".
LIMIT_SUBJECTS = {"max_count": "WORKER_MAX_COUNT allows", "cores": "the cores allow",
                  "memory": "memory allows"}
QUEUE_COLUMNS = ("waiting", "queued", "running", "failed_last_hour")


def duration(seconds: float) -> str:
    """A short human duration: ``42 s``, ``3 min 05 s``, ``2 h 03 min``, ``3 d 4 h``."""
    return words(int(seconds), (" d", " h", " min", " s"))


def age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{duration(seconds)} ago"


@dataclass(frozen=True, slots=True)
class Sparkline(Readable):
    """An inline SVG polyline of memory samples."""

    line: str
    area: str
    peak: int
    low: int
    last: int
    count: int
    low_text: str = ""
    peak_text: str = ""
    width: int = SPARK_WIDTH
    height: int = SPARK_HEIGHT


def sparkline(samples: list[int]) -> Sparkline | None:
    """Scaled to the samples' range, but never narrower than a tenth of the peak, so a
    steady worker draws a flat line while growth (a leak, a filling grid) stands out."""
    if len(samples) < 2:
        return None
    low, peak = min(samples), max(*samples, 1)
    span = max(peak - low, peak * MIN_SPAN_OF_PEAK)
    base = peak - span
    step = (SPARK_WIDTH - 2 * SPARK_PAD) / (len(samples) - 1)
    usable = SPARK_HEIGHT - 2 * SPARK_PAD
    points = [
        (SPARK_PAD + i * step, SPARK_HEIGHT - SPARK_PAD - usable * (value - base) / span)
        for i, value in enumerate(samples)
    ]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    bottom = SPARK_HEIGHT - SPARK_PAD
    area = f"{points[0][0]:.1f},{bottom} {line} {points[-1][0]:.1f},{bottom}"
    return Sparkline(line=line, area=area, peak=peak, low=low, last=samples[-1],
                     count=len(samples), low_text=_bytes(low), peak_text=_bytes(peak))


def task_fate(task: TaskView) -> str:
    """What an abort does to the task a worker runs (the queue's rule: attempts remain?)."""
    ran = duration(task.elapsed)
    attempt = f"attempt {task.attempt} of {task.max_attempts}"
    if task.attempt < task.max_attempts:
        return (
            f"Task {task.id} ({task.func_path}) has run for {ran} ({attempt}). "
            f"It will be requeued and start again from the beginning; "
            f"the {ran} of work are lost."
        )
    return (
        f"Task {task.id} ({task.func_path}) has run for {ran} on its last attempt "
        f"({attempt}). It will be marked FAILED and not retried."
    )


def abort_question(worker: WorkerView) -> str:
    if worker.task is None:
        return f"Worker {worker.id} is idle: it stops at once, no task is affected."
    return f"Worker {worker.id} is stopped at once. {task_fate(worker.task)}"


SENTINEL = 987654321


@dataclass(frozen=True, slots=True)
class Links:
    """URLs reversed once per render, not three times per card (64 cards add up)."""

    drain: str
    abort: str
    undrain: str
    task: str

    @classmethod
    def build(cls) -> Links:
        return cls(
            drain=reverse("api-worker-drain"),
            abort=reverse("api-worker-abort", args=[SENTINEL]),
            undrain=reverse("api-worker-undrain", args=[SENTINEL]),
            task=reverse("admin:workers_task_change", args=[SENTINEL]),
        )

    def with_id(self, template: str, pk: int) -> str:
        return template.replace(str(SENTINEL), str(pk))


@dataclass(frozen=True, slots=True)
class Card(Readable):
    worker: WorkerView
    badge: str
    heartbeat: str
    memory: str
    cpu: str
    elapsed: str
    progress_percent: int | None
    sparkline: Sparkline | None
    abort_question: str
    uptime: str
    stopped: str
    # Seconds at the snapshot, for the page to keep ages ticking between (and without) updates.
    heartbeat_seconds: float | None
    uptime_seconds: float | None
    stopped_seconds: float | None
    drain_url: str
    abort_url: str
    undrain_url: str
    task_url: str

    @property
    def can_drain(self) -> bool:
        w = self.worker
        return w.state in (WorkerState.RUNNING, WorkerState.STARTING) and not w.draining

    @property
    def can_undrain(self) -> bool:
        """Only an operator's drain can be cancelled, not one after a signal or an abort."""
        w = self.worker
        return w.is_active and w.draining and not w.aborting

    @property
    def undrain_question(self) -> str:
        return (f"Worker {self.worker.id} stays RUNNING: it finishes its current task, if "
                "any, and then claims more from its queues instead of stopping.")

    @property
    def can_abort(self) -> bool:
        return self.worker.is_active and not self.worker.aborting


def _bytes(value: int | None) -> str:
    return DASH if value is None else str(filesizeformat(value))


def _progress(task: TaskView | None) -> int | None:
    if task is None or task.progress is None:
        return None
    return round(task.progress * 100)


def _up_seconds(worker: WorkerView, now: datetime) -> float | None:
    if worker.started_at is None:
        return None
    return ((worker.stopped_at or now) - worker.started_at).total_seconds()


def _uptime(worker: WorkerView, now: datetime) -> str:
    seconds = _up_seconds(worker, now)
    return "not started" if seconds is None else duration(seconds)


def card(worker: WorkerView, now: datetime, links: Links | None = None) -> Card:
    links = links or Links.build()
    stopped = (now - worker.stopped_at).total_seconds() if worker.stopped_at else None
    return Card(
        worker=worker,
        badge=worker.state.lower(),
        heartbeat=age(worker.heartbeat_age),
        memory=_bytes(worker.rss_bytes),
        cpu=DASH if worker.cpu_percent is None else f"{worker.cpu_percent:.0f} %",
        elapsed=duration(worker.task.elapsed) if worker.task else "",
        progress_percent=_progress(worker.task),
        sparkline=sparkline(worker.samples),
        abort_question=abort_question(worker),
        uptime=_uptime(worker, now),
        stopped="" if stopped is None else age(stopped),
        heartbeat_seconds=worker.heartbeat_age,
        uptime_seconds=_up_seconds(worker, now) if worker.is_active else None,
        stopped_seconds=stopped,
        drain_url=links.drain,
        abort_url=links.with_id(links.abort, worker.id),
        undrain_url=links.with_id(links.undrain, worker.id),
        task_url=links.with_id(links.task, worker.task.id) if worker.task else "",
    )


@dataclass(frozen=True, slots=True)
class Limit(Readable):
    key: str
    label: str
    value: int
    binding: bool


@dataclass(frozen=True, slots=True)
class MemoryBar(Readable):
    total: str
    available: str
    used: str
    percent: float
    level: str


@dataclass(frozen=True, slots=True)
class QueueRow(Readable):
    name: str
    waiting: int
    queued: int
    running: int
    failed_last_hour: int
    paused: bool = False

    @property
    def pause_question(self) -> str:
        queued = f"Its {self.queued} queued task(s) stay" if self.queued else "Its tasks stay"
        return (f"{queued} queued until you resume it; tasks already running finish. "
                "Workers on every machine stop claiming from it.")


@dataclass(frozen=True, slots=True)
class Overview(Readable):
    active: int
    admissible: int
    can_add: bool
    reason: str
    limits: list[Limit]
    memory: MemoryBar
    queues: list[QueueRow]
    binding: str = "max_count"
    tasks_memory: str = ""  # committed to running tasks, measured, what the next one needs
    waiting: str = ""  # why a queued task waits for memory, if one does

    @property
    def room(self) -> int:
        return max(self.admissible - self.active, 0)

    @property
    def capacity(self) -> str:
        """How full the node is, worded as a state rather than an error."""
        if self.active > self.admissible:
            return f"{self.active - self.admissible} started beyond capacity"
        if self.admissible == 0:
            return "no room for a worker now"
        return "full" if self.room == 0 else f"room for {self.room} more"

    @property
    def capacity_detail(self) -> str:
        allows = LIMIT_SUBJECTS.get(self.binding, f"{self.binding} allows")
        if self.admissible == 0:
            return f"{allows} none"
        if self.active > self.admissible:
            return f"{allows} {self.admissible}"
        return f"{self.active} of {self.admissible} places in use"

    @property
    def totals(self) -> QueueRow:
        return QueueRow(
            "all",
            *(sum(getattr(row, column) for row in self.queues) for column in QUEUE_COLUMNS),
        )


def limits(by: dict[str, int]) -> list[Limit]:
    binding = min(by, key=by.__getitem__) if by else ""  # ties as admission breaks them
    return [
        Limit(key, LIMIT_LABELS.get(key, key), value, key == binding) for key, value in by.items()
    ]


def memory_bar(adm: Admission) -> MemoryBar:
    mem = adm.memory
    percent = mem.percent
    if percent >= MEMORY_CRIT_PERCENT:
        level = "crit"
    elif percent >= MEMORY_WARN_PERCENT:
        level = "warn"
    else:
        level = "ok"
    return MemoryBar(
        total=_bytes(mem.total),
        available=_bytes(mem.available),
        used=_bytes(max(mem.total - mem.available, 0)),
        percent=percent,
        level=level,
    )


def queue_rows(queues: dict[str, dict[str, int]],
               paused: Collection[str] = ()) -> list[QueueRow]:
    return [_queue_row(name, counts, name in paused) for name, counts in queues.items()]


def _queue_row(name: str, counts: dict[str, int], paused: bool) -> QueueRow:
    get = counts.get
    return QueueRow(name, get("waiting", 0), get("queued", 0), get("running", 0),
                    get("failed_last_hour", 0), paused)


def overview(snap: Snapshot) -> Overview:
    adm = snap.admission
    return Overview(
        active=adm.active,
        admissible=adm.admissible,
        can_add=adm.can_add,
        reason=adm.reason,
        limits=limits(adm.limits),
        memory=memory_bar(adm),
        queues=queue_rows(snap.queues, snap.paused),
        binding=adm.binding,
        tasks_memory=adm.memory_line(),
        waiting=adm.waiting,
    )


@dataclass(frozen=True, slots=True)
class Panel(Readable):
    generated_at: datetime
    overview: Overview
    active: list[Card]
    ended: list[Card]

    @property
    def drainable(self) -> int:
        """Workers "Drain one" may pick (it picks only RUNNING ones)."""
        return sum(c.can_drain and c.worker.state == WorkerState.RUNNING for c in self.active)


def build(snap: Snapshot) -> Panel:
    now = snap.generated_at
    links = Links.build()
    return Panel(
        generated_at=now,
        overview=overview(snap),
        active=[card(view, now, links) for view in snap.workers if view.is_active],
        ended=[card(view, now, links) for view in snap.workers if not view.is_active],
    )

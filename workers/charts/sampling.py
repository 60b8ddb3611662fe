"""Samples for the charts: each minute's finished tasks, queue depth, worker memory and CPU.

The monitor tick calls :func:`sample` (one process across nodes at a time). A minute is
written once it has ended, plus ``SETTLE`` seconds for finishing transactions to commit:
its finished tasks by queue and outcome (a range of ``task_finished_idx``), the waits of
those tasks, the queue depth read at that moment, and each worker's heartbeats. Minutes
are then rolled up into quarter hours and hours, so a week's chart reads 168 rows per
series. Every read is bounded: one minute's tasks, at most ``CATCH_UP`` minutes after a
pause, and the minute rows of the buckets being rolled up.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.db.models import (
    Avg,
    BigIntegerField,
    Count,
    ExpressionWrapper,
    F,
    Max,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.functions import Coalesce, Greatest

from ..models import ALL_QUEUES, Heartbeat, QueueSample, Task, WorkerSample
from ..queue import clock
from ..queue.literals import literals
from ..states import FINISHED_TASK_STATES, TaskState
from ..web import status
from .epoch import EpochSeconds, MinuteStart

logger = logging.getLogger(__name__)

MINUTE = 60
QUARTER = 900
HOUR = 3600
SPANS = (MINUTE, QUARTER, HOUR)
SETTLE = 5.0  # seconds after a minute's end before it is counted
CATCH_UP = 60  # minutes: how far back a first sampling, or one after a pause, reaches
KEEP = {MINUTE: 86400, QUARTER: 2 * 86400, HOUR: 8 * 86400}  # seconds each span is kept
OUTCOMES = {
    TaskState.SUCCEEDED: "succeeded",
    TaskState.FAILED: "failed",
    TaskState.CANCELLED: "cancelled",
}
DEPTHS = ("queued", "waiting", "running")


@dataclass
class SampleReport:
    minutes: int = 0
    rolled_up: dict[int, int] = field(default_factory=dict)


def floor(seconds: float, span: int) -> int:
    return int(seconds // span) * span


def moment(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def sample(now: datetime | None = None) -> SampleReport:
    """Write every ended minute not written yet, then roll complete buckets up."""
    current = clock.now() if now is None else now
    report = SampleReport()
    end = floor(current.timestamp() - SETTLE, MINUTE)
    last = last_bucket(MINUTE)
    start = end - CATCH_UP * MINUTE if last is None else max(last + MINUTE, end - CATCH_UP * MINUTE)
    if start >= end:
        return report  # nothing ended since the last sample: no roll-up is due either
    _write_minutes(start, end)
    report.minutes = (end - start) // MINUTE
    for span in SPANS[1:]:
        report.rolled_up[span] = _roll_up(span)
    return report


def last_bucket(span: int) -> int | None:
    rows = QueueSample.objects.filter(span=span, queue=ALL_QUEUES)
    value: int | None = rows.aggregate(last=Max("bucket"))["last"]
    return value


# --- Minutes, from the tasks and heartbeats ---


def _write_minutes(start: int, end: int) -> None:
    queues = _Rows()
    for minute in range(start, end, MINUTE):
        queues.get(ALL_QUEUES, minute)
    for entry in _finished(start, end):
        for name in (entry["queue"], ALL_QUEUES):
            _add_finished(queues.get(name, entry["minute"]), entry)
    _add_depth(queues, end - MINUTE)
    workers = [_worker_minute(entry) for entry in _heartbeats(start, end)]
    with transaction.atomic():
        QueueSample.objects.bulk_create(queues.rows(), ignore_conflicts=True)
        WorkerSample.objects.bulk_create(workers, ignore_conflicts=True)


class _Rows:
    """Queue rows of one span by (queue, bucket), made on first use."""

    def __init__(self, span: int = MINUTE, minutes: int = 1) -> None:
        self.span = span
        self.minutes = minutes
        self.by_key: dict[tuple[str, int], QueueSample] = {}

    def get(self, queue: str, bucket: int) -> QueueSample:
        key = (queue, bucket)
        if key not in self.by_key:
            self.by_key[key] = QueueSample(
                span=self.span, bucket=bucket, queue=queue, minutes=self.minutes
            )
        return self.by_key[key]

    def rows(self) -> list[QueueSample]:
        return list(self.by_key.values())


def _finished(start: int, end: int) -> Iterator[Mapping[str, Any]]:
    """Finished tasks of [start, end) by queue, outcome and minute, with their waits."""
    tasks = Task.objects.filter(
        state__common_in=literals(FINISHED_TASK_STATES),
        finished_at__gte=moment(start),
        finished_at__lt=moment(end),
    )
    grouped = tasks.annotate(minute=MinuteStart("finished_at")).values("queue", "state", "minute")
    yield from grouped.annotate(
        n=Count("*"), waited=Count("last_attempted_at"), wait=Sum(wait_seconds())
    ).order_by()


def wait_seconds() -> Any:
    """From when a task could first run by its schedule to the start of its last attempt.

    A retried task waits from its retry time (``run_after``); a task in a run also waits
    for its predecessors. None for a task that never started.
    """
    ready = Greatest(EpochSeconds("created_at"), EpochSeconds(Coalesce("run_after", "created_at")))
    return EpochSeconds("last_attempted_at") - ready


def _add_finished(row: QueueSample, entry: Mapping[str, Any]) -> None:
    name = OUTCOMES[TaskState(entry["state"])]
    setattr(row, name, getattr(row, name) + entry["n"])
    row.waited += entry["waited"]
    row.wait_seconds += entry["wait"] or 0.0


def _add_depth(queues: _Rows, minute: int) -> None:
    """The depth now, recorded for the minute that has just ended."""
    total = queues.get(ALL_QUEUES, minute)
    for depth in DEPTHS:
        setattr(total, depth, 0.0)
    for name, counts in status.queue_counts().items():
        row = queues.get(name, minute)
        for depth in DEPTHS:
            setattr(row, depth, float(counts[depth]))
            setattr(total, depth, getattr(total, depth) + counts[depth])


def _heartbeats(start: int, end: int) -> Iterator[Mapping[str, Any]]:
    beats = Heartbeat.objects.filter(at__gte=moment(start), at__lt=moment(end))
    grouped = beats.annotate(minute=MinuteStart("at")).values("worker_id", "minute")
    yield from grouped.annotate(
        n=Count("*"), rss=Avg("rss_bytes"), peak=Max("rss_bytes"), cpu=Avg("cpu_percent")
    ).order_by()


def _worker_minute(entry: Mapping[str, Any]) -> WorkerSample:
    return WorkerSample(
        span=MINUTE, bucket=entry["minute"], worker_id=entry["worker_id"], heartbeats=entry["n"],
        rss_bytes=round(entry["rss"]), rss_peak_bytes=entry["peak"],
        cpu_percent=round(entry["cpu"], 1),
    )


# --- Roll-ups, from the minutes ---


def _roll_up(span: int) -> int:
    """Write the ``span`` buckets whose minutes are all written; return how many."""
    written = last_bucket(MINUTE)
    if written is None:
        return 0
    until = floor(written + MINUTE, span)
    last = last_bucket(span)
    since = until - KEEP[MINUTE] if last is None else max(last + span, until - KEEP[MINUTE])
    if since >= until:
        return 0
    minutes = Q(span=MINUTE, bucket__gte=since, bucket__lt=until)
    queues = combine_queues(QueueSample.objects.filter(minutes), span)
    workers = combine_workers(WorkerSample.objects.filter(minutes), span)
    with transaction.atomic():
        QueueSample.objects.bulk_create(queues, ignore_conflicts=True)
        WorkerSample.objects.bulk_create(workers, ignore_conflicts=True)
    return sum(1 for row in queues if row.queue == ALL_QUEUES)


def combine_queues(minutes: Iterable[QueueSample], span: int) -> list[QueueSample]:
    """Minute rows added up into ``span`` buckets; depth is the mean over sampled minutes.

    A queue with no row in a sampled minute had nothing queued then: it counts as 0.
    """
    rows = _Rows(span, minutes=0)
    sampled: Counter[int] = Counter()
    for minute in minutes:
        bucket = floor(minute.bucket, span)
        row = rows.get(minute.queue, bucket)
        if minute.queue == ALL_QUEUES:
            row.minutes += minute.minutes
            sampled[bucket] += minute.queued is not None
        for name in (*OUTCOMES.values(), "waited", "wait_seconds"):
            setattr(row, name, getattr(row, name) + getattr(minute, name))
        for depth in DEPTHS:
            if getattr(minute, depth) is not None:
                setattr(row, depth, (getattr(row, depth) or 0.0) + getattr(minute, depth))
    for row in rows.rows():
        row.minutes = rows.get(ALL_QUEUES, row.bucket).minutes
        for depth in DEPTHS:
            total = getattr(row, depth) or 0.0
            setattr(row, depth, total / sampled[row.bucket] if sampled[row.bucket] else None)
    return rows.rows()


def worker_totals(minutes: QuerySet[WorkerSample], span: int) -> Iterator[Mapping[str, Any]]:
    """Minute rows of each worker added up by the database into ``span`` buckets.

    ``rss`` and ``cpu`` are sums weighted by heartbeats: divide them by ``beats``.
    """
    start = ExpressionWrapper(F("bucket") / span * span, output_field=BigIntegerField())
    grouped = minutes.order_by().annotate(start=start).values("worker_id", "start")
    yield from grouped.annotate(
        beats=Sum("heartbeats"), rss=Sum(F("rss_bytes") * F("heartbeats")),
        peak=Max("rss_peak_bytes"), cpu=Sum(F("cpu_percent") * F("heartbeats")),
    )


def combine_workers(minutes: QuerySet[WorkerSample], span: int) -> list[WorkerSample]:
    """Minute rows of each worker into ``span`` buckets: means weighted by heartbeats."""
    return [
        WorkerSample(
            span=span, bucket=row["start"], worker_id=row["worker_id"], heartbeats=row["beats"],
            rss_bytes=round(row["rss"] / row["beats"]), rss_peak_bytes=row["peak"],
            cpu_percent=round(row["cpu"] / row["beats"], 1),
        )
        for row in worker_totals(minutes, span)
    ]


# --- Pruning ---


def expired(now: datetime) -> Q:
    """Rows past their span's keeping time, by the database's ``now``."""
    old = Q()
    for span, keep in KEEP.items():
        old |= Q(span=span, bucket__lt=floor(now.timestamp() - keep, MINUTE))
    return old


def prune_batch(size: int) -> tuple[int, bool]:
    """Delete up to ``size`` old rows of each model: how many went, and whether that was all."""
    old = expired(clock.now())
    counts = [_delete(QueueSample.objects.filter(old), size),
              _delete(WorkerSample.objects.filter(old), size)]
    return sum(counts), max(counts) < size


def _delete(rows: QuerySet[Any], size: int) -> int:
    picked = rows.order_by().values("pk")[:size]
    count: int = rows.model._default_manager.filter(pk__in=picked).delete()[0]
    return count


__all__ = [
    "KEEP", "SPANS", "SampleReport", "combine_queues", "combine_workers", "prune_batch", "sample",
]

"""Chart data for a time range: a few bounded reads of the samples, never of the tasks.

The last hour is read in minutes, the last day in quarter hours, the last week in hours:
at most 168 rows per series. A range ends with the bucket in progress, added up from its
minutes, as is the bucket before it until the sampler has rolled it up (at most 120 rows
per series); the last hour ends with the last minute sampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..models import ALL_QUEUES, QueueSample, WorkerSample
from ..queue import clock
from .sampling import (
    DEPTHS,
    HOUR,
    MINUTE,
    OUTCOMES,
    QUARTER,
    combine_queues,
    floor,
    worker_totals,
)

Number = float | None


@dataclass(frozen=True, slots=True)
class Range:
    name: str
    label: str
    seconds: int
    span: int

    @property
    def buckets(self) -> int:
        return self.seconds // self.span


RANGES = {
    r.name: r
    for r in (
        Range("hour", "Last hour", 3600, MINUTE),
        Range("day", "Last day", 86400, QUARTER),
        Range("week", "Last week", 7 * 86400, HOUR),
    )
}
DEFAULT_RANGE = "hour"


class UnknownRange(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"{name!r} is not a range; use one of {', '.join(RANGES)}")


def get_range(name: str | None) -> Range:
    try:
        return RANGES[name or DEFAULT_RANGE]
    except KeyError:
        raise UnknownRange(str(name)) from None


@dataclass(frozen=True, slots=True)
class WorkerSeries:
    worker_id: int
    rss_peak_bytes: list[Number]
    cpu_percent: list[Number]


@dataclass(frozen=True, slots=True)
class ChartData:
    range: Range
    queue: str | None
    generated_at: datetime
    buckets: list[int]  # each bucket's start, seconds since 1970
    throughput: dict[str, list[Number]]  # finished per minute, by outcome
    failed: list[Number]  # failed tasks per bucket
    failure_rate: list[Number]  # percent of the bucket's finished tasks
    depth: dict[str, list[Number]]  # queued, waiting, running
    wait_seconds: list[Number]  # mean wait of the tasks that finished in the bucket
    workers: list[WorkerSeries] = field(default_factory=list)

    @property
    def sampled(self) -> bool:
        return any(value is not None for value in self.throughput["succeeded"])


def chart_data(
    name: str | None, queue: str | None = None, now: datetime | None = None
) -> ChartData:
    """The charts of one range, for all queues (and every worker) or for one queue."""
    chosen = get_range(name)
    current = clock.now() if now is None else now
    end = floor(current.timestamp(), chosen.span)
    if chosen.span == MINUTE:
        end -= MINUTE  # the minute in progress is not sampled yet
    first = end - (chosen.buckets - 1) * chosen.span
    buckets = list(range(first, end + 1, chosen.span))
    queues = _queue_rows(chosen.span, first, end, queue)
    data = _queue_series(chosen, queue, current, buckets, queues)
    if queue is None:
        data.workers.extend(_worker_series(chosen.span, first, end, buckets))
    return data


def _unrolled(span: int, first: int, end: int) -> int:
    """The first bucket a range adds up from its minutes: the one in progress, and the one
    before it, which the sampler rolls up only once its last minute is written (SETTLE
    seconds after it ends), and on its next run. A rolled-up row, once there, wins."""
    return max(first, end - span)


def _queue_rows(span: int, first: int, end: int, queue: str | None) -> dict[tuple[str, int], Any]:
    names = [ALL_QUEUES] if queue is None else [ALL_QUEUES, queue]
    rows: list[QueueSample] = []
    if span > MINUTE:
        minutes = QueueSample.objects.filter(span=MINUTE, queue__in=names,
                                             bucket__gte=_unrolled(span, first, end))
        rows += combine_queues(minutes, span)
    rows += QueueSample.objects.filter(span=span, queue__in=names, bucket__gte=first)
    return {(row.queue, row.bucket): row for row in rows}


def _queue_series(
    chosen: Range, queue: str | None, now: datetime, buckets: list[int],
    rows: dict[tuple[str, int], Any],
) -> ChartData:
    name = ALL_QUEUES if queue is None else queue
    data = ChartData(
        range=chosen, queue=queue, generated_at=now, buckets=buckets,
        throughput={outcome: [] for outcome in OUTCOMES.values()}, failed=[], failure_rate=[],
        depth={depth: [] for depth in DEPTHS}, wait_seconds=[],
    )
    for bucket in buckets:
        total = rows.get((ALL_QUEUES, bucket))
        _append(data, total, rows.get((name, bucket)) if total is not None else None)
    return data


def _append(data: ChartData, total: QueueSample | None, row: QueueSample | None) -> None:
    """One bucket's values: None where nothing was sampled; 0 where a queue had no row."""
    minutes = total.minutes if total is not None else 0
    counts = {outcome: getattr(row, outcome) if row else 0 for outcome in OUTCOMES.values()}
    for outcome, count in counts.items():
        data.throughput[outcome].append(count / minutes if minutes else None)
    finished = sum(counts.values())
    data.failed.append(counts["failed"] if minutes else None)
    data.failure_rate.append(100.0 * counts["failed"] / finished if finished else None)
    for depth in DEPTHS:
        sampled = total is not None and getattr(total, depth) is not None
        value = getattr(row, depth) if row is not None else None
        data.depth[depth].append((value or 0.0) if sampled else None)
    waited = row.waited if row is not None else 0
    data.wait_seconds.append(row.wait_seconds / waited if row is not None and waited else None)


WorkerRow = tuple[int, int, Number, Number]  # worker, bucket, peak memory, mean CPU


def _worker_series(span: int, first: int, end: int, buckets: list[int]) -> list[WorkerSeries]:
    """Plain tuples, not model instances: a week of 64 workers is 10,752 rows."""
    rows: list[WorkerRow] = []
    if span > MINUTE:  # first: a rolled-up row of the same bucket is written over them
        rows += _workers_unrolled(_unrolled(span, first, end), span)
    rows += WorkerSample.objects.filter(span=span, bucket__gte=first).values_list(
        "worker_id", "bucket", "rss_peak_bytes", "cpu_percent"
    )
    workers: dict[int, WorkerSeries] = {}
    for worker_id, bucket, peak, cpu in rows:
        series = workers.get(worker_id)
        if series is None:
            series = workers[worker_id] = WorkerSeries(
                worker_id, [None] * len(buckets), [None] * len(buckets)
            )
        at = (bucket - first) // span
        if at < len(buckets):  # a row after the range's end (the clock went back) is left out
            series.rss_peak_bytes[at], series.cpu_percent[at] = peak, cpu
    return [workers[key] for key in sorted(workers)]


def _workers_unrolled(since: int, span: int) -> list[WorkerRow]:
    """The buckets from ``since`` from their minutes, added up by the database: a row per
    worker and bucket."""
    minutes = WorkerSample.objects.filter(span=MINUTE, bucket__gte=since)
    return [(row["worker_id"], row["start"], row["peak"], round(row["cpu"] / row["beats"], 1))
            for row in worker_totals(minutes, span)]


def queue_names(data: ChartData) -> list[str]:
    """The queues sampled in the range, for links to their own charts."""
    spans = {data.range.span, MINUTE}  # the bucket in progress is in minutes only
    rows = QueueSample.objects.filter(span__in=spans, bucket__gte=data.buckets[0])
    names = rows.exclude(queue=ALL_QUEUES).values_list("queue", flat=True).distinct()
    return sorted(names.order_by())


def to_json(data: ChartData) -> dict[str, Any]:
    return {
        "range": data.range.name,
        "span_seconds": data.range.span,
        "queue": data.queue,
        "generated_at": data.generated_at.isoformat(),
        "buckets": data.buckets,
        "throughput_per_minute": data.throughput,
        "failures": {"failed": data.failed, "rate_percent": data.failure_rate},
        "depth": data.depth,
        "wait_seconds": data.wait_seconds,
        "workers": [
            {
                "worker_id": worker.worker_id,
                "rss_peak_bytes": worker.rss_peak_bytes,
                "cpu_percent": worker.cpu_percent,
            }
            for worker in data.workers
        ],
    }

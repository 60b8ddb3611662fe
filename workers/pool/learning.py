"""Memory estimates learned from measured peaks, per task function (optionally per unit of a
scale the task names, e.g. a simulation kind's grid points x samples).

Finished attempts are folded into one :class:`MemoryProfile` row per function by the
monitor tick, a few seconds after they end: the hot path (claim, success) writes nothing
more for it. An estimate is a high percentile of the latest peaks plus a margin; with a
scale, of the peaks relative to a straight line fitted through (scale, peak).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, IntegrityError, connections, transaction
from django.db.models import BigIntegerField, BooleanField, ExpressionWrapper, Q, Subquery
from django.db.models.functions import Coalesce

from ..models import TaskAttempt
from ..models.learning import LearningMark, MemoryProfile
from ..queue.clock import ago
from ..queue.hotpath import hot_cursor
from ..states import Outcome

logger = logging.getLogger(__name__)
MB = 1024 * 1024
WINDOW = 50  # the latest measured attempts a profile keeps
MIN_RUNS = 3  # measured attempts before an estimate is called learned
PERCENTILE = 0.95
MARGIN = 0.10
SETTLE = 1.0  # seconds: an attempt row committed out of id order is not skipped
FOLD_BATCH = 1000
FOLD_BATCHES = 20  # per tick: 20,000 attempts every 5 s at most
MARK = "attempts"
# Outcomes whose peak says what the task needs: a full run, or one stopped for memory
# (its peak is at least its limit). An error or a cancel may end before the peak.
MEASURED = (Outcome.SUCCEEDED, Outcome.MEMORY_LIMIT, Outcome.OOM_KILLED)

type Sample = tuple[float | None, float]  # (scale, peak MB)
type Measure = Callable[[dict[str, Any]], float | None]
_scales: dict[str, Measure] = {}


def scale_by(func_path: str, measure: Measure) -> None:
    """Learn ``func_path``'s memory per unit of ``measure(kwargs)`` (e.g. a simulation
    kind's grid points): registered by the app that defines the function."""
    _scales[func_path] = measure


def scale_of(func_path: str, kwargs: dict[str, Any]) -> float | None:
    measure = _scales.get(func_path)
    return None if measure is None else measure(kwargs)


@dataclass(frozen=True, slots=True)
class Learned:
    mb: int
    runs: int


def learned(func_path: str, scale: float | None = None) -> Learned | None:
    """The learned estimate for a task of ``func_path`` (of ``scale``), or None if too few
    of its attempts have been measured."""
    samples = _samples(func_path)
    return None if samples is None else learned_from(samples, scale)


def learned_from(samples: Sequence[Sample], scale: float | None) -> Learned | None:
    """The estimate ``samples`` give a call of ``scale``, or None if too few."""
    mb = estimate_mb(samples, scale)
    return None if mb is None else Learned(mb, len(samples))


@functools.cache
def _samples_sql(alias: str) -> str:
    quote = connections[alias].ops.quote_name
    return (f"SELECT {quote('samples')} FROM {quote(MemoryProfile._meta.db_table)}"
            f" WHERE {quote('func_path')} = %s")


def _samples(func_path: str) -> list[Sample] | None:
    """A function's profile's samples, or None: asked at every submission, so in SQL built
    once (the ORM's query building was most of an enqueue's estimate)."""
    db = connections[DEFAULT_DB_ALIAS]
    with hot_cursor(db) as cursor:
        cursor.execute(_samples_sql(db.alias), [func_path])
        row = cursor.fetchone()
    if row is None:
        return None
    value = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    return [(scale, peak) for scale, peak in value]


def estimate_mb(samples: Sequence[Sample], scale: float | None) -> int | None:
    if scale is not None and scale > 0:
        scaled = [(s, p) for s, p in samples if s is not None and s > 0]
        if len(scaled) >= MIN_RUNS:
            return _scaled(scaled, scale)
    plain = [p for s, p in samples if s is None]
    if len(plain) < MIN_RUNS:
        return None
    return _rounded(percentile(plain) * (1 + MARGIN))


def percentile(values: Sequence[float], q: float = PERCENTILE) -> float:
    """Nearest rank: the smallest value at least ``q`` of them do not exceed."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _scaled(samples: Sequence[tuple[float, float]], scale: float) -> int:
    """Peak = base + per_unit * scale, fitted by least squares; the high percentile of
    how far peaks stood above that line, times the line at ``scale``, plus the margin."""
    base, per_unit = fit(samples)
    line = base + per_unit * scale
    ratios = [peak / (base + per_unit * s) for s, peak in samples if base + per_unit * s > 0]
    if line <= 0 or not ratios:  # the line says nothing here: scale in proportion
        ratio = percentile([peak / s for s, peak in samples])
        return _rounded(ratio * scale * (1 + MARGIN))
    return _rounded(line * max(1.0, percentile(ratios)) * (1 + MARGIN))


def fit(samples: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(base, per_unit) of the least-squares line; through the origin when every sample
    has the same scale. A negative slope is taken as flat."""
    n = len(samples)
    mean_s = sum(s for s, _ in samples) / n
    mean_p = sum(p for _, p in samples) / n
    spread = sum((s - mean_s) ** 2 for s, _ in samples)
    if spread == 0:
        return 0.0, mean_p / mean_s
    per_unit = sum((s - mean_s) * (p - mean_p) for s, p in samples) / spread
    if per_unit < 0:
        return mean_p, 0.0
    return mean_p - per_unit * mean_s, per_unit


def _rounded(mb: float) -> int:
    return max(1, math.ceil(round(mb, 6)))  # 560 * 1.1 is 616.0000000000001


def fold(batch: int = FOLD_BATCH, batches: int = FOLD_BATCHES) -> int:
    """Fold attempts that ended since the last fold into their functions' profiles, a short
    transaction per ``batch`` attempts; return how many measured ones were learned from.
    With nothing new: one statement."""
    if not _anything_new():
        return 0
    _ensure_mark()
    learned_from = 0
    for _ in range(batches):
        found, seen = _fold_batch(batch)
        learned_from += found
        if seen < batch:
            break
    return learned_from


def _anything_new() -> bool:
    folded = LearningMark.objects.filter(name=MARK).values("attempt_id")[:1]
    after = Coalesce(Subquery(folded), 0, output_field=BigIntegerField())
    return TaskAttempt.objects.filter(pk__gt=after).exists()


def _fold_batch(batch: int) -> tuple[int, int]:
    with transaction.atomic():
        mark = LearningMark.objects.select_for_update().get(name=MARK)
        rows = _settled(mark.attempt_id, batch)
        if rows:
            mark.attempt_id = rows[-1][0]
            mark.save(update_fields=["attempt_id"])
        return _learn(rows), len(rows)


def _ensure_mark() -> None:
    if LearningMark.objects.filter(name=MARK).exists():
        return
    with contextlib.suppress(IntegrityError), transaction.atomic():
        LearningMark.objects.create(name=MARK)


type Row = tuple[Any, ...]  # id, function, scale, peak, outcome, settled


def _settled(after: int, batch: int) -> list[Row]:
    """Attempts after ``after`` in id order, up to the first that ended too recently (a
    row with a smaller id may still be committing on PostgreSQL)."""
    rows = TaskAttempt.objects.filter(pk__gt=after).order_by("pk").annotate(
        settled=_older_than(SETTLE)
    ).values_list("pk", "task__func_path", "task__memory_scale", "peak_rss_bytes", "outcome",
                  "settled")[:batch]
    found: list[Row] = []
    for row in rows:
        if not row[5]:
            break
        found.append(row)
    return found


def _older_than(seconds: float) -> ExpressionWrapper[Q]:
    return ExpressionWrapper(Q(finished_at__lt=ago(seconds)), output_field=BooleanField())


def _learn(rows: Sequence[Row]) -> int:
    new: dict[str, list[Sample]] = {}
    for _, func_path, scale, peak, outcome, _ in rows:
        if peak and outcome in MEASURED:
            new.setdefault(func_path, []).append((scale, round(peak / MB, 1)))
    for func_path, samples in new.items():
        profile, _ = MemoryProfile.objects.select_for_update().get_or_create(func_path=func_path)
        profile.samples = [*profile.samples, *samples][-WINDOW:]
        profile.runs += len(samples)
        profile.save(update_fields=["samples", "runs", "updated_at"])
    return sum(len(samples) for samples in new.values())

"""Chart data drawn as SVG on the server: axes with ticks and titles, one path per series.

Colours come from CSS classes (``static/crucible/charts.css``), so the admin's light and
dark themes both apply; the SVG scales with its box (``viewBox``), down to a phone's width.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from .series import ChartData, Number

WIDTH, HEIGHT = 480, 220
LEFT, RIGHT, TOP, BOTTOM = 62, 12, 12, 44
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
WORKER_COLOURS = 8  # workers drawn with a line of their own; the rest as a range
MB = 1024 * 1024
# x-axis ticks per range: every (seconds) and the label's strftime format
X_TICKS = {"hour": (600, "%H:%M"), "day": (3 * 3600, "%H:%M"), "week": (86400, "%a %d")}
SPAN_WORDS = {60: "minute", 900: "15 min", 3600: "hour"}
NO_SAMPLES = "no samples in this range"


@dataclass(frozen=True, slots=True)
class Tick:
    at: str  # the position in the SVG, formatted (floatformat costs a Decimal per use)
    label: str


@dataclass(frozen=True, slots=True)
class Line:
    label: str
    kind: str  # the CSS class suffix that colours it
    path: str


@dataclass(frozen=True, slots=True)
class Chart:
    key: str
    title: str
    y_title: str
    x_title: str
    lines: list[Line]
    y_ticks: list[Tick]
    x_ticks: list[Tick]
    legend: list[Line]
    summary: str

    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    right_edge: int = WIDTH - RIGHT
    bottom_edge: int = HEIGHT - BOTTOM
    x_title_x: int = LEFT + PLOT_W // 2
    x_title_y: int = HEIGHT - 6
    y_title_x: int = 14
    y_title_y: int = TOP + PLOT_H // 2


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    kind: str
    values: Sequence[Number]


def charts(data: ChartData) -> list[Chart]:
    """The charts of one range: the queue charts, and the workers' when all queues are shown."""
    per = SPAN_WORDS[data.range.span]
    drawn = [
        _throughput(data),
        _chart(data, key="failures", title="Failures", y_title=f"failed per {per}",
               series=[Series("failed", "failed", data.failed)], summary=_failures(data)),
        _chart(data, key="depth", title="Queue depth", y_title="tasks",
               series=[Series(name, name, values) for name, values in data.depth.items()],
               summary=_latest("queued", data.depth["queued"], "{:.0f}")),
        _chart(data, key="wait", title="Wait before start", y_title="seconds",
               series=[Series("mean wait", "wait", data.wait_seconds)],
               summary=_latest("latest mean", data.wait_seconds, "{:.1f} s")),
    ]
    if data.queue is None:
        drawn += _worker_charts(data)
    return drawn


def _throughput(data: ChartData) -> Chart:
    series = [Series(name, name, values) for name, values in data.throughput.items()]
    rates = [
        sum(values[i] or 0.0 for values in data.throughput.values())
        for i, sampled in enumerate(data.throughput["succeeded"]) if sampled is not None
    ]
    summary = f"{sum(rates) / len(rates):.1f} finished / min" if rates else NO_SAMPLES
    return _chart(data, key="throughput", title="Throughput", y_title="finished / min",
                  series=series, summary=summary)


def _worker_charts(data: ChartData) -> list[Chart]:
    peak = max((v for w in data.workers for v in w.rss_peak_bytes if v is not None), default=0)
    unit, scale = ("GB", 1024 * MB) if peak >= 2048 * MB else ("MB", MB)
    memory = [
        Series(f"worker {w.worker_id}", "",
               [None if v is None else v / scale for v in w.rss_peak_bytes])
        for w in data.workers
    ]
    cpu = [Series(f"worker {w.worker_id}", "", w.cpu_percent) for w in data.workers]
    count = f"{len(data.workers)} worker{'s' if len(data.workers) != 1 else ''}"
    return [
        _chart(data, key="memory", title="Worker memory (peak)", y_title=unit,
               series=_busiest(memory), summary=count),
        _chart(data, key="cpu", title="Worker CPU (mean)", y_title="% of a core",
               series=_busiest(cpu), summary=count),
    ]


def _busiest(workers: list[Series]) -> list[Series]:
    """The workers with the highest values get a line and a colour each; the others are
    drawn as two grey lines, their highest and lowest value per bucket."""
    if len(workers) <= WORKER_COLOURS:
        return [Series(w.label, f"c{i}", w.values) for i, w in enumerate(workers)]
    ranked = sorted(workers, key=lambda w: max((v for v in w.values if v is not None),
                                               default=-1.0), reverse=True)
    top, rest = ranked[:WORKER_COLOURS], ranked[WORKER_COLOURS:]
    columns = [[v for v in bucket if v is not None] for bucket in zip(
        *(w.values for w in rest), strict=True)]
    others = f"{len(rest)} others"
    return [
        *(Series(w.label, f"c{i}", w.values) for i, w in enumerate(top)),
        Series(f"{others}, highest", "others", [max(c) if c else None for c in columns]),
        Series(f"{others}, lowest", "others", [min(c) if c else None for c in columns]),
    ]


def _chart(data: ChartData, *, key: str, title: str, y_title: str, series: list[Series],
           summary: str) -> Chart:
    top = _nice_top(max((v for s in series for v in s.values if v is not None), default=0.0))
    ticks = _tick_count(top)
    x_of = _x_scale(data)
    xs = [f"{x_of(bucket):.1f}" for bucket in data.buckets]
    lines = [Line(s.label, s.kind, _path(xs, s.values, top)) for s in series]
    return Chart(
        key=key, title=title, y_title=y_title, x_title=_x_title(), lines=lines,
        y_ticks=[Tick(f"{_y(top * i / ticks, top):.1f}", _number(top * i / ticks))
                 for i in range(ticks + 1)],
        x_ticks=_x_ticks(data, x_of), legend=lines, summary=summary,
    )


def _x_scale(data: ChartData) -> Callable[[float], float]:
    first = data.buckets[0]
    width = max(data.buckets[-1] - first, 1)
    return lambda epoch: LEFT + PLOT_W * (epoch - first) / width


def _y(value: float, top: float) -> float:
    return TOP + PLOT_H * (1 - value / top)


def _path(xs: list[str], values: Sequence[Number], top: float) -> str:
    """Segments between gaps; a point alone is a dot (a zero-length stroke with round caps).

    ``xs`` are the buckets' x positions, formatted once per chart: a week of 64 workers
    draws 10,752 points per chart.
    """
    parts: list[str] = []
    pen_down = False
    scale = PLOT_H / top
    bottom = TOP + PLOT_H
    for x, value in zip(xs, values, strict=True):
        if value is None:
            pen_down = False
            continue
        if pen_down:
            parts.append(f"L{x} {bottom - value * scale:.1f}")
        else:
            parts.append(f"M{x} {bottom - value * scale:.1f} h0")
            pen_down = True
    return " ".join(parts)


def _nice_top(peak: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten that is at least ``peak``."""
    if peak <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(peak))
    return next(step * power for step in (1.0, 2.0, 2.5, 5.0, 10.0) if step * power >= peak)


def _tick_count(top: float) -> int:
    """Steps of a round size: 4 of 0.5 for a top of 2; 5 of 2, 0.5 or 1 for 10, 2.5 or 5."""
    leading = top / 10.0 ** math.floor(math.log10(top))
    return 4 if round(leading, 6) == 2.0 else 5


def _number(value: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:g}{suffix}"
    return f"{value:.3g}"


def _x_ticks(data: ChartData, x_of: Callable[[float], float]) -> list[Tick]:
    step, fmt = X_TICKS[data.range.name]
    zone = timezone.get_current_timezone()
    offset = _offset(data.buckets[0])
    first = math.ceil((data.buckets[0] + offset) / step) * step - offset
    return [
        Tick(f"{x_of(at):.1f}", datetime.fromtimestamp(at, zone).strftime(fmt))
        for at in range(first, data.buckets[-1] + 1, step)
    ]


def _offset(epoch: int) -> int:
    delta = datetime.fromtimestamp(epoch, timezone.get_current_timezone()).utcoffset()
    return int(delta.total_seconds()) if delta else 0


def _x_title() -> str:
    return f"time ({timezone.get_current_timezone_name()})"


def _latest(label: str, values: Sequence[Number], fmt: str) -> str:
    known = [v for v in values if v is not None]
    return f"{label}: {fmt.format(known[-1])}" if known else NO_SAMPLES


def _failures(data: ChartData) -> str:
    failed = [v for v in data.failed if v is not None]
    return f"{sum(failed):.0f} failed in the range" if failed else NO_SAMPLES

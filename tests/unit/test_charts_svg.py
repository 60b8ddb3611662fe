"""The server-drawn charts: round axis steps, gaps in a line, ticks on round times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from workers.charts import svg
from workers.charts.series import RANGES, ChartData


@pytest.mark.parametrize(("peak", "ticks"), [
    (0, [0, 0.2, 0.4, 0.6, 0.8, 1]), (2.4, [0, 0.5, 1, 1.5, 2, 2.5]), (7, [0, 2, 4, 6, 8, 10]),
    (99, [0, 20, 40, 60, 80, 100]), (180, [0, 50, 100, 150, 200]),
    (4100, [0, 1000, 2000, 3000, 4000, 5000]), (9836, [0, 2000, 4000, 6000, 8000, 10000]),
])
def test_the_y_axis_ends_on_a_round_top_in_round_steps(peak: float, ticks: list[float]) -> None:
    top = svg._nice_top(peak)
    count = svg._tick_count(top)
    assert [top * i / count for i in range(count + 1)] == pytest.approx(ticks)


def data(name: str, values: list[float | None]) -> ChartData:
    chosen = RANGES[name]
    start = int(datetime(2026, 11, 29, 10, 0, tzinfo=UTC).timestamp())
    buckets = [start + i * chosen.span for i in range(len(values))]
    zeros: list[float | None] = [0.0] * len(values)
    return ChartData(
        range=chosen, queue="q", generated_at=datetime.now(UTC), buckets=buckets,
        throughput={"succeeded": values, "failed": zeros, "cancelled": zeros}, failed=zeros,
        failure_rate=zeros, depth={"queued": zeros, "waiting": zeros, "running": zeros},
        wait_seconds=zeros,
    )


def test_a_line_breaks_where_nothing_was_sampled_and_a_lone_point_is_a_dot() -> None:
    chart = svg.charts(data("hour", [1.0, 2.0, None, 4.0, None]))[0]
    path = chart.lines[0].path
    assert path.count("M") == 2, path
    assert path.endswith("h0"), "the lone last point is drawn as a dot"
    assert chart.y_ticks[-1].label == "5"


def test_the_time_axis_ticks_fall_on_round_times() -> None:
    chart = svg.charts(data("hour", [1.0] * 60))[0]
    assert [tick.label for tick in chart.x_ticks] == [
        "10:00", "10:10", "10:20", "10:30", "10:40", "10:50"]
    assert chart.x_title == "time (UTC)"


def test_the_busiest_workers_get_a_line_each_and_the_others_a_range() -> None:
    from workers.charts.series import WorkerSeries

    chart = data("hour", [1.0, 1.0, 1.0])
    workers = [WorkerSeries(i, [float(i), None, float(i)], [float(i), None, None])
               for i in range(1, 11)]
    drawn = svg.charts(ChartData(**{**{f: getattr(chart, f) for f in (
        "range", "generated_at", "buckets", "throughput", "failed", "failure_rate", "depth",
        "wait_seconds")}, "queue": None, "workers": workers}))
    memory = next(c for c in drawn if c.key == "memory")
    labels = [line.label for line in memory.legend]
    assert labels[:8] == [f"worker {i}" for i in range(10, 2, -1)]
    assert labels[8:] == ["2 others, highest", "2 others, lowest"]
    highest, lowest = memory.lines[8:]
    assert highest.path.count("M") == 2 and lowest.path.count("M") == 2  # a gap in the middle
    assert {line.kind for line in memory.lines} == {*(f"c{i}" for i in range(8)), "others"}

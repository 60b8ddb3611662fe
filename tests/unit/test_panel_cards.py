"""The panel's view model: durations, sparklines, what an abort does, capacity and memory."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from workers.panel import cards
from workers.pool.admission import Admission, MachineMemory
from workers.web.status import Snapshot, TaskView, WorkerView

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
GB = 1024**3


def task_view(**fields: Any) -> TaskView:
    base = TaskView(
        id=17,
        func_path="simulations.slab.run",
        attempt=1,
        max_attempts=3,
        started_at=NOW - timedelta(seconds=133),
        elapsed=133.0,
        progress=0.25,
        progress_message="step 1 of 4",
    )
    return replace(base, **fields)


def worker_view(**fields: Any) -> WorkerView:
    base = WorkerView(
        id=3,
        state="RUNNING",
        pid=4242,
        node="node-a",
        queues=["default"],
        spawned=True,
        rss_bytes=300 * 1024**2,
        cpu_percent=97.4,
        task_rss_bytes=None,
        last_heartbeat=NOW - timedelta(seconds=4),
        heartbeat_age=4.0,
        started_at=NOW - timedelta(hours=2),
        stopped_at=None,
        task=task_view(),
        samples=[100, 200, 300],
        warnings=[],
        failure_reason="",
        exit_code=None,
        log_tail="",
        draining=False,
        aborting=False,
    )
    return replace(base, **fields)


def admission(**fields: Any) -> Admission:
    base = Admission(
        admissible=2,
        active=1,
        can_add=True,
        reason="Physical cores (2) allow 2.",
        limits={"max_count": 4, "cores": 2, "memory": 5},
        memory=MachineMemory(total=16 * GB, available=4 * GB, percent=75.0),
    )
    return replace(base, **fields)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (42.9, "42 s"),
        (65, "1 min 05 s"),
        (3 * 3600 + 180, "3 h 03 min"),
        (2 * 86400 + 5 * 3600, "2 d 5 h"),
        (-3, "0 s"),
    ],
)
def test_duration_is_short_and_human(seconds, text):
    assert cards.duration(seconds) == text


def test_age_of_a_worker_that_never_beat_says_so():
    assert cards.age(None) == "never"
    assert cards.age(4) == "4 s ago"


def test_sparkline_scales_from_zero_to_the_peak():
    line = cards.sparkline([0, 50, 100])
    assert line is not None
    points = [tuple(map(float, p.split(","))) for p in line.line.split()]
    assert [x for x, _ in points] == [2.0, 80.0, 158.0]
    assert points[0][1] == cards.SPARK_HEIGHT - cards.SPARK_PAD, "zero sits on the baseline"
    assert points[2][1] == cards.SPARK_PAD, "the peak touches the top"
    assert (line.peak, line.last, line.count) == (100, 100, 3)
    assert line.area.startswith("2.0,34 ") and line.area.endswith(" 158.0,34")


def test_a_steady_worker_draws_a_flat_line_and_growth_stands_out():
    steady = cards.sparkline([1000, 1001, 1000, 1001])
    assert steady is not None
    heights = {float(p.split(",")[1]) for p in steady.line.split()}
    assert max(heights) - min(heights) < 1.0, "1 in 1000 is noise, not a trend"
    growing = cards.sparkline([800, 900, 1000])
    assert growing is not None
    assert growing.line.split()[0].endswith(",34.0") and growing.line.split()[-1].endswith(",2.0")
    assert growing.low == 800


def test_sparkline_needs_two_samples():
    assert cards.sparkline([]) is None
    assert cards.sparkline([5]) is None
    assert cards.sparkline([0, 0]) is not None, "all zero draws a flat line, no division by 0"


def test_abort_requeues_a_task_with_attempts_left():
    text = cards.abort_question(worker_view())
    assert "Task 17 (simulations.slab.run) has run for 2 min 13 s (attempt 1 of 3)" in text
    assert "requeued" in text


def test_abort_fails_a_task_on_its_last_attempt():
    text = cards.abort_question(worker_view(task=task_view(attempt=3)))
    assert "last attempt (attempt 3 of 3)" in text
    assert "FAILED" in text and "requeued" not in text


def test_abort_of_an_idle_worker_affects_no_task():
    assert "idle" in cards.abort_question(worker_view(task=None))


def test_card_formats_resources_and_progress():
    card = cards.card(worker_view(), NOW)
    assert (card.badge, card.memory, card.cpu, card.heartbeat) == (
        "running",
        "300.0\xa0MB",
        "97 %",
        "4 s ago",
    )
    assert (card.progress_percent, card.elapsed, card.uptime) == (25, "2 min 13 s", "2 h 00 min")
    assert card.can_drain and card.can_abort


def test_a_draining_or_aborting_worker_offers_no_second_request():
    assert not cards.card(worker_view(draining=True), NOW).can_drain
    assert not cards.card(worker_view(aborting=True), NOW).can_abort
    dead = cards.card(worker_view(state="DEAD", stopped_at=NOW), NOW)
    assert not dead.can_drain and not dead.can_abort


def test_the_binding_limit_is_marked_with_admissions_tie_order():
    limits = cards.limits({"max_count": 2, "cores": 2, "memory": 7})
    assert [(lim.key, lim.binding) for lim in limits] == [
        ("max_count", True),
        ("cores", False),
        ("memory", False),
    ]
    assert [lim.label for lim in limits] == ["max count", "cores", "memory"]


@pytest.mark.parametrize(("percent", "level"), [(10.0, "ok"), (75.0, "warn"), (93.5, "crit")])
def test_memory_bar_level(percent, level):
    memory = MachineMemory(total=16 * GB, available=4 * GB, percent=percent)
    bar = cards.memory_bar(admission(memory=memory))
    assert bar.level == level
    assert (bar.total, bar.available, bar.used) == ("16.0\xa0GB", "4.0\xa0GB", "12.0\xa0GB")


def test_build_splits_active_and_stopped_workers_and_totals_the_queues():
    snap = Snapshot(
        generated_at=NOW,
        workers=[worker_view(), worker_view(id=4, state="FAILED", task=None, stopped_at=NOW)],
        admission=admission(),
        queues={
            "default": {"waiting": 1, "queued": 5, "running": 1, "failed_last_hour": 2},
            "gpu": {"queued": 3},
        },
    )
    panel = cards.build(snap)
    assert [c.worker.id for c in panel.active] == [3]
    assert [c.worker.id for c in panel.ended] == [4]
    assert panel.overview.totals == cards.QueueRow("all", 1, 8, 1, 2)
    assert [row.name for row in panel.overview.queues] == ["default", "gpu"]


@pytest.mark.parametrize(
    ("active", "admissible", "binding", "capacity", "detail"),
    [
        (1, 2, "cores", "room for 1 more", "1 of 2 places in use"),
        (2, 2, "cores", "full", "2 of 2 places in use"),
        (3, 2, "cores", "1 started beyond capacity", "the cores allow 2"),
        (0, 0, "memory", "no room for a worker now", "memory allows none"),
        (5, 4, "max_count", "1 started beyond capacity", "WORKER_MAX_COUNT allows 4"),
    ],
)
def test_capacity_reads_as_a_state_never_as_n_of_fewer(active, admissible, binding, capacity,
                                                       detail):
    adm = admission(active=active, admissible=admissible, can_add=active < admissible,
                    binding=binding)
    ov = cards.overview(Snapshot(generated_at=NOW, workers=[], admission=adm))
    assert (ov.capacity, ov.capacity_detail) == (capacity, detail)
    assert "at capacity" not in ov.capacity
    assert f"{active} of {admissible}" not in ov.capacity_detail or active <= admissible


def test_a_worker_without_a_cpu_reading_shows_a_dash():
    assert cards.card(worker_view(cpu_percent=None), NOW).cpu == "\u2013"


def test_only_an_operators_drain_can_be_cancelled():
    drained = cards.card(worker_view(state="DRAINING", draining=True), NOW)
    assert drained.can_undrain and not drained.can_drain
    assert drained.undrain_url == "/api/workers/3/undrain/"
    assert "stays RUNNING" in drained.undrain_question
    after_signal = cards.card(worker_view(state="DRAINING", draining=False), NOW)
    aborting = cards.card(worker_view(state="DRAINING", draining=True, aborting=True), NOW)
    dead = cards.card(worker_view(state="DEAD", draining=True, stopped_at=NOW), NOW)
    assert not (after_signal.can_undrain or aborting.can_undrain or dead.can_undrain)


def test_drain_one_counts_only_running_workers_not_yet_draining():
    workers = [
        worker_view(id=1),
        worker_view(id=2, draining=True),
        worker_view(id=3, state="STARTING"),
        worker_view(id=4, state="DEAD", stopped_at=NOW),
    ]
    panel = cards.build(Snapshot(generated_at=NOW, workers=workers, admission=admission()))
    assert panel.drainable == 1
    empty = cards.build(Snapshot(generated_at=NOW, workers=[], admission=admission()))
    assert empty.drainable == 0


def test_ages_carry_their_seconds_so_the_page_keeps_them_ticking():
    card = cards.card(worker_view(), NOW)
    assert (card.heartbeat_seconds, card.uptime_seconds, card.stopped_seconds) == (
        4.0, 7200.0, None)
    ended = cards.card(worker_view(state="DEAD", stopped_at=NOW - timedelta(seconds=90)), NOW)
    assert (ended.uptime_seconds, ended.stopped_seconds, ended.stopped) == (
        None, 90.0, "1 min 30 s ago")

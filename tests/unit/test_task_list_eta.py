"""ETA of a running task: the rest of the work at the attempt's average rate so far."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workers.models import Task
from workers.states import TaskState
from workers.templatetags.crucible_tasks import eta as eta_filter
from workers.web import tasklist
from workers.web.status import TaskView

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("progress", "elapsed", "left"),
    [
        (0.25, 60.0, 180.0),  # a quarter in a minute: three more minutes
        (0.5, 10.0, 10.0),
        (0.9, 90.0, 10.0),
        (1.0, 42.0, 0.0),
        (1.2, 42.0, 0.0),  # a task that over-reports is done, not "minus" time
    ],
)
def test_eta_is_the_rest_at_the_rate_so_far(progress: float, elapsed: float, left: float) -> None:
    assert tasklist.eta(progress, elapsed) == pytest.approx(left)


@pytest.mark.parametrize(("progress", "elapsed"), [(None, 60.0), (0.0, 60.0), (0.5, 0.0)])
def test_no_eta_without_progress_or_time(progress: float | None, elapsed: float) -> None:
    assert tasklist.eta(progress, elapsed) is None
    assert tasklist.eta_text(progress, elapsed) == ""


def test_the_text_is_a_short_duration() -> None:
    assert tasklist.eta_text(0.25, 60.0) == "3 min 00 s left"
    assert tasklist.eta_text(0.01, 3600.0) == "4 d 3 h left"


def test_a_tasks_eta_counts_from_its_current_attempt() -> None:
    running = Task(state=TaskState.RUNNING, progress=0.5, started_at=NOW - timedelta(hours=5),
                   last_attempted_at=NOW - timedelta(seconds=30))
    assert tasklist.task_eta(running, NOW) == "30 s left"
    assert tasklist.task_eta(Task(state=TaskState.QUEUED, progress=0.5), NOW) == ""
    unknown = Task(state=TaskState.RUNNING, progress=None, last_attempted_at=NOW)
    assert tasklist.task_eta(unknown, NOW) == ""


def test_the_panel_cards_filter_reads_a_task_view() -> None:
    view = TaskView(id=1, func_path="a.b", attempt=1, max_attempts=3, started_at=NOW,
                    elapsed=120.0, progress=0.75, progress_message="")
    assert eta_filter(view) == "40 s left"
    assert eta_filter(None) == ""

"""A write the database refuses for its content becomes a smaller one that still ends the
attempt: no task's data can make its worker crash or loop."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from django.db import DataError

from workers import queue
from workers.queue.hotpath import ClaimedTask
from workers.runtime.outbox import Failure, Progress, Success, Successes, instead
from workers.states import Outcome

TOKEN = ClaimedTask(id=7, attempt=1, worker_id=3, func_path="m.f", args=[], kwargs={},
                    timeout=60.0, max_attempts=3, memory_mb=None,
                    started_at=datetime(2026, 1, 1, tzinfo=UTC))
REFUSED = DataError("invalid byte sequence")


def test_a_refused_success_becomes_a_recorded_error():
    success = Success(TOKEN, {"x": 1}, queue.Ending(Outcome.SUCCEEDED, peak_rss_bytes=5))
    [replacement] = instead(success, REFUSED)
    assert isinstance(replacement, Failure)
    assert replacement.ending.outcome == Outcome.ERROR
    assert "could not be recorded" in replacement.ending.error
    assert "invalid byte sequence" in replacement.ending.error
    assert replacement.ending.peak_rss_bytes == 5


def test_a_refused_failure_is_written_again_without_its_data_then_given_up():
    full = Failure(TOKEN, queue.Ending(Outcome.ERROR, "boom", "Traceback...", log_tail="..."))
    [smaller] = instead(full, REFUSED)
    assert isinstance(smaller, Failure) and smaller.minimal
    assert smaller.ending.outcome == Outcome.ERROR
    assert (smaller.ending.traceback, smaller.ending.log_tail) == ("", "")
    assert instead(smaller, REFUSED) == []


def test_refused_progress_is_dropped():
    assert instead(Progress(TOKEN, 0.5, "half"), REFUSED) == []


def test_refused_successes_are_written_again_one_by_one():
    """Only the result the database refuses becomes an error; the others are recorded."""
    other = dataclasses.replace(TOKEN, id=8)
    done = (Success(TOKEN, 1, queue.Ending(Outcome.SUCCEEDED)),
            Success(other, 2, queue.Ending(Outcome.SUCCEEDED)))
    assert instead(Successes(done), REFUSED) == list(done)

"""The monitor prunes by age, and worker logs rotate; both without a cron job."""

from __future__ import annotations

import logging
from datetime import timedelta
from logging.handlers import RotatingFileHandler

import pytest
from django.utils import timezone

from workers.models import Heartbeat, TickGuard, Worker
from workers.pool import monitor, stamps
from workers.runtime import logs
from workers.states import WorkerState

pytestmark = pytest.mark.django_db


def test_old_ended_workers_and_old_samples_are_pruned(crucible):
    now = timezone.now()
    old = now - timedelta(seconds=crucible.cleanup_age + 60)
    gone = Worker.objects.create(node="n", state=WorkerState.DEAD, stopped_at=old)
    recent = Worker.objects.create(node="n", state=WorkerState.FAILED, stopped_at=now)
    alive = Worker.objects.create(node="n", state=WorkerState.RUNNING)
    stale_at = now - timedelta(seconds=crucible.heartbeat_retention + 60)
    Heartbeat.objects.create(worker=alive, at=stale_at, rss_bytes=1, cpu_percent=0)
    fresh = Heartbeat.objects.create(worker=alive, at=now, rss_bytes=1, cpu_percent=0)

    report = monitor.tick()

    assert report.pruned_workers >= 1
    assert set(Worker.objects.values_list("pk", flat=True)) == {recent.pk, alive.pk}
    assert list(Heartbeat.objects.values_list("pk", flat=True)) == [fresh.pk]
    assert not Worker.objects.filter(pk=gone.pk).exists()


def test_the_tick_guard_lets_one_process_per_interval_run_it(crucible):
    assert monitor.acquire("tick:n", "first", interval=60) is True
    assert monitor.acquire("tick:n", "second", interval=60) is False
    assert TickGuard.objects.get(name="tick:n").holder == "first"
    assert monitor.acquire("tick:n", "third", interval=0) is True


def test_worker_logs_rotate_at_10_mb_keeping_3_backups(tmp_path):
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        path = logs.to_file(tmp_path, 7, keep_console=True)
        added = [h for h in root.handlers if h not in before]
        assert path == tmp_path / "worker_7.log"
        assert len(added) == 1 and isinstance(added[0], RotatingFileHandler)
        assert (added[0].maxBytes, added[0].backupCount) == (10 * 1024 * 1024, 3)
        logging.getLogger("workers.test").warning("written to the worker log")
        added[0].flush()
        assert "written to the worker log" in logs.tail(path)
    finally:
        for handler in root.handlers[len(before):]:
            root.removeHandler(handler)
            handler.close()


@pytest.mark.parametrize(("configured", "kept"), [(logging.DEBUG, logging.DEBUG),
                                                  (logging.INFO, logging.INFO),
                                                  (logging.WARNING, logging.INFO)])
def test_a_worker_keeps_debug_and_logs_info_at_least(tmp_path, configured, kept):
    """LOG_LEVEL=DEBUG reaches the worker's log; a quieter level is raised to INFO, since
    the worker's log file is the panel's record of it (README's LOG_LEVEL)."""
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    root.setLevel(configured)
    try:
        logs.to_file(tmp_path, 8, keep_console=True)
        assert root.level == kept
    finally:
        for handler in root.handlers[len(before):]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)


def test_one_process_per_node_runs_the_tick_per_interval_without_sql(crucible, settings):
    import dataclasses

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.CRUCIBLE = dataclasses.replace(crucible, tick_interval=60.0)
    with CaptureQueriesContext(connection) as queries:
        assert stamps.take_turn("tick", 60) is True
        assert stamps.take_turn("tick", 60) is False, "another process's turn came too soon"
        assert stamps.take_turn("leases", 60) is True, "each job keeps its own stamp"
        assert monitor.maybe_tick() is None  # within the interval: nothing, not a statement
    assert len(queries) == 0
    assert stamps.take_turn("tick", 0) is True


def test_a_stamp_tells_its_age_and_an_unreadable_one_is_never_fresh(crucible, runtime_dir):
    assert stamps.age("look:default") == float("inf"), "never stamped"
    stamps.stamp("look:default")
    assert 0 <= stamps.age("look:default") < 5
    assert stamps.age("look:other") == float("inf"), "each job keeps its own stamp"
    for path in (runtime_dir / "bell").glob("look-*.stamp"):
        path.write_bytes(b"garbage")
    assert stamps.age("look:default") == float("inf")

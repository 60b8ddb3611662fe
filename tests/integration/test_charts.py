"""Charts over time: minute samples from tasks and heartbeats, roll-ups, ranges, the JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from workers.charts import sampling, series
from workers.models import ALL_QUEUES, Heartbeat, QueueSample, Task, Worker, WorkerSample
from workers.pool import monitor
from workers.states import TaskState

pytestmark = pytest.mark.django_db

FUNC = "tests.testapp.tasks.noop"
NOW = datetime(2026, 11, 29, 12, 0, 30, tzinfo=UTC)  # minutes up to 11:59 have ended
MICRO = timedelta(microseconds=1)


def at(hhmmss: str) -> datetime:
    h, m, s = (int(part) for part in hhmmss.split(":"))
    return NOW.replace(hour=h, minute=m, second=s, microsecond=0)


def epoch(hhmmss: str) -> int:
    return int(at(hhmmss).timestamp())


def finished(when: datetime, state: str = TaskState.SUCCEEDED, queue: str = "default",
             created: datetime | None = None, started: datetime | None = None,
             run_after: datetime | None = None) -> Task:
    task = Task.objects.create(func_path=FUNC, timeout=60, queue=queue, state=state,
                               finished_at=when, last_attempted_at=started, run_after=run_after)
    Task.objects.filter(pk=task.pk).update(created_at=created or when)
    return task


def live(state: str, queue: str, count: int = 1) -> None:
    for _ in range(count):
        Task.objects.create(func_path=FUNC, timeout=60, queue=queue, state=state)


def row(queue: str, bucket: int, span: int = 60) -> QueueSample:
    return QueueSample.objects.get(span=span, queue=queue, bucket=bucket)


@pytest.fixture
def tasks() -> None:
    """Finished tasks on both sides of minute boundaries, and some waiting for work."""
    finished(at("11:57:00"), created=at("11:56:00"), started=at("11:56:30"))  # waited 30 s
    finished(at("11:57:59") + timedelta(microseconds=999_999))  # never started: no wait
    finished(at("11:58:00"), TaskState.FAILED, "gpu", created=at("11:50:00"),
             run_after=at("11:57:40"), started=at("11:57:50"))  # a retry: waited 10 s
    finished(at("11:58:59") + timedelta(microseconds=999_999), TaskState.CANCELLED)
    finished(at("11:59:30"), queue="gpu")
    finished(at("12:00:10"))  # the minute in progress: not yet
    finished(at("10:59:59"))  # before the first sample reaches back (an hour)
    live(TaskState.QUEUED, "gpu", 2)
    live(TaskState.WAITING, "gpu")
    live(TaskState.RUNNING, "default")


def test_a_minute_counts_exactly_its_finished_tasks_by_queue_and_outcome(tasks: None) -> None:
    report = sampling.sample(NOW)

    assert report.minutes == 60  # 11:00 to 11:59, a row each for all queues
    assert QueueSample.objects.filter(span=60, queue=ALL_QUEUES).count() == 60
    first = row("default", epoch("11:57:00"))
    assert (first.succeeded, first.failed, first.cancelled) == (2, 0, 0)
    assert first.waited == 1
    assert first.wait_seconds == pytest.approx(30.0, abs=0.01)
    gpu = row("gpu", epoch("11:58:00"))
    assert (gpu.succeeded, gpu.failed, gpu.waited) == (0, 1, 1)
    assert gpu.wait_seconds == pytest.approx(10.0, abs=0.01)
    assert row("default", epoch("11:58:00")).cancelled == 1
    total = row(ALL_QUEUES, epoch("11:58:00"))
    assert (total.succeeded, total.failed, total.cancelled) == (0, 1, 1)
    assert row("gpu", epoch("11:59:00")).succeeded == 1
    assert not QueueSample.objects.filter(bucket__gte=epoch("12:00:00")).exists()
    assert row(ALL_QUEUES, epoch("11:00:00")).succeeded == 0


def test_the_depth_is_read_for_the_minute_that_just_ended(tasks: None) -> None:
    sampling.sample(NOW)

    gpu = row("gpu", epoch("11:59:00"))
    assert (gpu.queued, gpu.waiting, gpu.running) == (2, 1, 0)
    total = row(ALL_QUEUES, epoch("11:59:00"))
    assert (total.queued, total.waiting, total.running) == (2, 1, 1)
    assert row(ALL_QUEUES, epoch("11:58:00")).queued is None  # caught up: not sampled then


def test_sampling_again_writes_only_the_minutes_that_ended_since(tasks: None) -> None:
    sampling.sample(NOW)
    finished(at("12:00:59") + timedelta(microseconds=999_999))
    assert sampling.sample(at("12:01:04")).minutes == 0  # 5 s for finishing commits

    assert sampling.sample(at("12:01:05")).minutes == 1
    assert row("default", epoch("12:00:00")).succeeded == 2
    assert QueueSample.objects.filter(span=60, queue=ALL_QUEUES).count() == 61


def test_minutes_roll_up_into_quarter_hours_and_hours(tasks: None) -> None:
    report = sampling.sample(NOW)  # up to 11:59: the hour from 11:00 is complete

    assert report.rolled_up == {900: 4, 3600: 1}
    assert sampling.sample(NOW + timedelta(seconds=60)).rolled_up == {900: 0, 3600: 0}
    quarter = row(ALL_QUEUES, epoch("11:45:00"), span=900)
    assert (quarter.succeeded, quarter.failed, quarter.cancelled) == (3, 1, 1)
    assert quarter.minutes == 15
    assert quarter.queued == 2.0  # one minute sampled (11:59), with 2 queued
    hour = row("gpu", epoch("11:00:00"), span=3600)
    assert (hour.succeeded, hour.failed, hour.waited, hour.minutes) == (1, 1, 1, 60)
    assert row(ALL_QUEUES, epoch("11:00:00"), span=3600).succeeded == 3
    assert not QueueSample.objects.filter(span=3600, bucket=epoch("12:00:00")).exists()


def test_depth_rolls_up_as_the_mean_over_the_sampled_minutes() -> None:
    sampling.sample(NOW)  # 11:59 sampled with nothing queued
    live(TaskState.QUEUED, "gpu", 4)
    sampling.sample(NOW + timedelta(seconds=60))  # 12:00 sampled with 4 queued
    sampling.sample(NOW + timedelta(minutes=15))  # 12:01 to 12:14 sampled with 4 queued

    quarter = row("gpu", epoch("12:00:00"), span=900)
    assert quarter.queued == 4.0
    assert row(ALL_QUEUES, epoch("11:45:00"), span=900).queued == 0.0


def test_heartbeats_become_each_workers_minutes_and_hours() -> None:
    worker = Worker.objects.create(node="n", state="RUNNING")
    for when, rss, cpu in (("11:58:10", 100, 10.0), ("11:58:40", 300, 30.0),
                           ("11:59:10", 200, 50.0)):
        Heartbeat.objects.create(worker=worker, at=at(when), rss_bytes=rss, cpu_percent=cpu)
    sampling.sample(NOW + timedelta(seconds=60))

    minute = WorkerSample.objects.get(span=60, worker_id=worker.pk, bucket=epoch("11:58:00"))
    assert (minute.heartbeats, minute.rss_bytes, minute.rss_peak_bytes) == (2, 200, 300)
    assert minute.cpu_percent == pytest.approx(20.0)
    hour = WorkerSample.objects.get(span=3600, worker_id=worker.pk)
    assert (hour.bucket, hour.heartbeats, hour.rss_bytes, hour.rss_peak_bytes) == (
        epoch("11:00:00"), 3, 200, 300)
    assert hour.cpu_percent == pytest.approx(30.0)


def test_the_last_hour_is_sixty_minutes_ending_with_the_last_one_sampled(tasks: None) -> None:
    sampling.sample(NOW)
    data = series.chart_data("hour", now=NOW)

    assert len(data.buckets) == 60
    assert data.buckets[-1] == epoch("11:59:00")
    i = data.buckets.index(epoch("11:58:00"))
    assert data.throughput["failed"][i] == 1.0
    assert data.throughput["cancelled"][i] == 1.0
    assert data.failure_rate[i] == 50.0
    assert data.depth["queued"][-1] == 2.0
    assert data.depth["queued"][i] is None
    assert data.wait_seconds[data.buckets.index(epoch("11:57:00"))] == pytest.approx(30.0, 0.01)


def test_a_range_ends_with_its_bucket_in_progress_from_its_minutes(tasks: None) -> None:
    sampling.sample(NOW)
    sampling.sample(NOW + timedelta(minutes=2))  # 12:00 and 12:01 written
    data = series.chart_data("day", queue="default", now=NOW + timedelta(minutes=2))

    assert len(data.buckets) == 96
    assert data.buckets[-1] == epoch("12:00:00")
    assert data.throughput["succeeded"][-1] == 0.5  # one task over two minutes
    assert data.throughput["succeeded"][-2] == pytest.approx(2 / 15)
    assert data.throughput["cancelled"][-2] == pytest.approx(1 / 15)
    assert data.depth["running"][-1] == 1.0


def test_the_bucket_that_just_ended_shows_before_the_sampler_rolls_it_up() -> None:
    """Just after 12:00 the sampler has written the minutes up to 11:58 only (a minute is
    counted SETTLE seconds after it ends), so the 11:45 quarter and 11:00 hour are not
    rolled up yet: they are added up from their minutes, as the bucket in progress is."""
    just_after = at("12:00:03")
    worker = Worker.objects.create(node="n")
    Heartbeat.objects.create(worker=worker, at=at("11:58:10"), rss_bytes=5, cpu_percent=50.0)
    finished(at("11:58:03"), TaskState.FAILED)
    sampling.sample(just_after)
    assert not QueueSample.objects.filter(span=900, bucket=epoch("11:45:00")).exists()

    for name, bucket in (("day", "11:45:00"), ("week", "11:00:00")):
        data = series.chart_data(name, now=just_after)
        i = data.buckets.index(epoch(bucket))
        assert data.failed[i] == 1, name
        assert [w.rss_peak_bytes[i] for w in data.workers] == [5], name


def test_the_week_reads_a_bounded_number_of_rows_in_five_queries(tasks: None) -> None:
    sampling.sample(NOW)
    with CaptureQueriesContext(connection) as queries:
        data = series.chart_data("week")
    assert len(data.buckets) == 168
    assert len(queries) == 5  # the clock, hours, minutes in progress, workers' of both
    assert not [q for q in queries if "workers_task" in q["sql"]], "samples only, no tasks"


def test_old_samples_are_pruned_by_span() -> None:
    # Pruning judges age by the real clock, so this test's moments are real ones too (a
    # fixed date made the 1.5-day-old sample expire once that date was a day behind).
    old = int((datetime.now(UTC) - timedelta(days=3)).timestamp()) // 60 * 60
    QueueSample.objects.create(span=60, bucket=old, queue=ALL_QUEUES)
    QueueSample.objects.create(span=900, bucket=old // 900 * 900, queue=ALL_QUEUES)
    QueueSample.objects.create(span=900, bucket=old + 36 * 3600, queue=ALL_QUEUES)  # 1.5 days
    QueueSample.objects.create(span=3600, bucket=old // 3600 * 3600, queue=ALL_QUEUES)
    WorkerSample.objects.create(span=60, bucket=old, worker_id=1, heartbeats=1, rss_bytes=1,
                                rss_peak_bytes=1, cpu_percent=0)

    deleted, done = sampling.prune_batch(10)

    assert (deleted, done) == (3, True)
    assert sorted(QueueSample.objects.values_list("span", flat=True)) == [900, 3600]


def test_the_tick_writes_samples(crucible: Any) -> None:
    finished(datetime.now(UTC) - timedelta(minutes=2))
    monitor.tick(leases=False, prune=False)
    assert QueueSample.objects.filter(span=60, queue="default", succeeded=1).exists()
    assert QueueSample.objects.filter(span=60, queue=ALL_QUEUES).count() == 60


def test_retention_prunes_the_samples_with_the_rest(crucible: Any) -> None:
    from workers.queue import retention

    old = int((datetime.now(UTC) - timedelta(days=9)).timestamp()) // 3600 * 3600
    QueueSample.objects.bulk_create(
        QueueSample(span=span, bucket=old, queue=ALL_QUEUES) for span in (60, 900, 3600)
    )
    QueueSample.objects.create(span=3600, bucket=old + 2 * 86400, queue=ALL_QUEUES)  # 7 days

    report = retention.prune(batch_size=2, max_batches=1)
    assert (report.chart_samples, report.more) == (2, True)
    assert retention.prune().chart_samples == 1
    assert list(QueueSample.objects.values_list("bucket", flat=True)) == [old + 2 * 86400]


def test_one_process_samples_per_interval_across_machines(
    crucible: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[None] = []
    monkeypatch.setattr(sampling, "sample", lambda: calls.append(None))
    monitor.tick(leases=False, prune=False)
    monitor.tick(leases=False, prune=False)  # another machine's tick, within 20 s
    assert len(calls) == 1


def test_rows_after_the_end_of_a_range_are_left_out() -> None:
    worker = Worker.objects.create(node="n", state="RUNNING")
    Heartbeat.objects.create(worker=worker, at=at("11:59:10"), rss_bytes=1, cpu_percent=1.0)
    sampling.sample(NOW)
    data = series.chart_data("hour", now=at("11:58:30"))  # the database's clock went back
    assert data.buckets[-1] == epoch("11:57:00")
    assert data.workers[0].rss_peak_bytes == [None] * 60

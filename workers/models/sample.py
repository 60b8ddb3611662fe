from __future__ import annotations

from django.db import models

# The total over every queue is kept under this name: a queue is never named "".
ALL_QUEUES = ""


class QueueSample(models.Model):
    """A queue's activity in one bucket of time (``span`` seconds from ``bucket``).

    Written by the monitor tick once a minute ends (span 60) and rolled up into longer
    spans, so a chart over a week reads a few hundred rows, not the tasks themselves.
    The row of queue ``""`` holds the total over all queues and marks the minutes sampled.
    """

    span = models.PositiveIntegerField(help_text="Seconds the bucket covers.")
    bucket = models.BigIntegerField(help_text="The bucket's start, in seconds since 1970 (UTC).")
    queue = models.CharField(max_length=100, blank=True)
    minutes = models.PositiveIntegerField(default=1, help_text="Minutes sampled in the bucket.")
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    cancelled = models.PositiveIntegerField(default=0)
    waited = models.PositiveIntegerField(default=0, help_text="Finished tasks that had started.")
    wait_seconds = models.FloatField(default=0.0, help_text="Their waits, added up.")
    # Depth when the minute was sampled (a mean over the bucket's minutes once rolled up);
    # None where nobody sampled it (the tick catching up on minutes it missed).
    queued = models.FloatField(null=True, blank=True)
    waiting = models.FloatField(null=True, blank=True)
    running = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["span", "queue", "bucket"], name="queue_sample_unique_bucket"
            )
        ]

    def __str__(self) -> str:
        return f"queue {self.queue or '(all)'} at {self.bucket} over {self.span} s"


class WorkerSample(models.Model):
    """A worker's memory and CPU in one bucket of time, from its heartbeats.

    ``worker_id`` is a plain number, not a foreign key: the history outlives the worker's row.
    """

    span = models.PositiveIntegerField(help_text="Seconds the bucket covers.")
    bucket = models.BigIntegerField(help_text="The bucket's start, in seconds since 1970 (UTC).")
    worker_id = models.BigIntegerField()
    heartbeats = models.PositiveIntegerField(help_text="Heartbeats the figures come from.")
    rss_bytes = models.BigIntegerField(help_text="Mean resident memory.")
    rss_peak_bytes = models.BigIntegerField()
    cpu_percent = models.FloatField(help_text="Mean CPU use, percent of one core.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["span", "bucket", "worker_id"], name="worker_sample_unique_bucket"
            )
        ]
        indexes = [
            # The charts read a range of buckets from the index alone: the rows of one span
            # are spread over the whole table, and a week of 64 workers is 10,752 of them.
            models.Index(
                fields=["span", "bucket", "worker_id", "rss_peak_bytes", "cpu_percent"],
                name="worker_sample_chart_idx",
            )
        ]

    def __str__(self) -> str:
        return f"worker {self.worker_id} at {self.bucket} over {self.span} s"

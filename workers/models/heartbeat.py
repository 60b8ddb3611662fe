from __future__ import annotations

from django.db import models


class Heartbeat(models.Model):
    """A resource sample of a worker (and the task it ran), pruned by age."""

    worker = models.ForeignKey("workers.Worker", on_delete=models.CASCADE, related_name="samples")
    at = models.DateTimeField()
    rss_bytes = models.BigIntegerField()
    cpu_percent = models.FloatField()
    task = models.ForeignKey(
        "workers.Task", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    task_rss_bytes = models.BigIntegerField(null=True, blank=True)
    task_cpu_percent = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["worker", "at"]
        indexes = [
            models.Index(fields=["worker", "at"], name="heartbeat_worker_at_idx"),
            models.Index(fields=["at"], name="heartbeat_at_idx"),  # pruning by age
        ]

    def __str__(self) -> str:
        return f"sample of worker {self.worker_id} at {self.at:%H:%M:%S}"


class TickGuard(models.Model):
    """Lets one process per node run the monitor tick per interval."""

    name = models.CharField(max_length=255, primary_key=True)
    holder = models.CharField(max_length=255, blank=True)
    ran_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"tick {self.name} by {self.holder}"

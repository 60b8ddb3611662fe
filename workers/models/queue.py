from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class PausedQueue(models.Model):
    """A queue whose tasks wait: a row here means no worker claims from it until resumed.

    A row, not a flag on each task, so pausing is one write whatever the queue holds, and
    the claim asks one primary-key lookup per queue it serves.
    """

    name = models.CharField(max_length=100, primary_key=True)
    paused_at = models.DateTimeField(db_default=Now())
    paused_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"queue {self.name} (paused)"

from __future__ import annotations

from django.db import models


class MemoryProfile(models.Model):
    """What the attempts of one task function measured: the "learned" memory estimate.

    Folded from finished attempts by the monitor tick (``workers.learning``); the estimate
    is computed from ``samples`` when a task is submitted.
    """

    func_path = models.CharField(max_length=255, unique=True)
    runs = models.PositiveIntegerField(default=0, help_text="Measured attempts folded in, ever.")
    samples = models.JSONField(
        default=list, blank=True,
        help_text="The latest measured attempts: [scale or null, peak in MB] pairs.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["func_path"]

    def __str__(self) -> str:
        return f"memory of {self.func_path} ({self.runs} runs)"


class LearningMark(models.Model):
    """How far finished attempts have been folded into memory profiles."""

    name = models.CharField(max_length=50, primary_key=True)
    attempt_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} folded up to attempt {self.attempt_id}"

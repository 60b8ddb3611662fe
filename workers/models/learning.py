from __future__ import annotations

from typing import Any

from django.db import models


class MemoryProfile(models.Model):
    """What the attempts of one task function measured: the "learned" memory estimate.

    Folded from finished attempts by the monitor tick (``workers.pool.learning``). The estimate
    of a call that names no scale is kept beside the samples it comes from (computed at
    every save), so that an enqueue reads it inside its own ``INSERT``; a call that names
    a scale is estimated from ``samples`` when it is submitted.
    """

    func_path = models.CharField(max_length=255, unique=True)
    runs = models.PositiveIntegerField(default=0, help_text="Measured attempts folded in, ever.")
    samples = models.JSONField(
        default=list, blank=True,
        help_text="The latest measured attempts: [scale or null, peak in MB] pairs.",
    )
    estimate_mb = models.PositiveIntegerField(
        null=True, blank=True, editable=False,
        help_text="The learned estimate of a call that names no scale; none until enough runs.")
    estimate_runs = models.PositiveIntegerField(
        default=0, editable=False, help_text="The measured runs that estimate rests on.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["func_path"]

    def __str__(self) -> str:
        return f"memory of {self.func_path} ({self.runs} runs)"

    def save(self, *args: Any, **kwargs: Any) -> None:
        from ..pool.learning import learned_from  # the arithmetic lives with the learning

        found = learned_from([(scale, peak) for scale, peak in self.samples], None)
        self.estimate_mb, self.estimate_runs = (found.mb, found.runs) if found else (None, 0)
        fields = kwargs.get("update_fields")
        if fields is not None:
            kwargs["update_fields"] = {*fields, "estimate_mb", "estimate_runs"}
        super().save(*args, **kwargs)


class LearningMark(models.Model):
    """How far finished attempts have been folded into memory profiles."""

    name = models.CharField(max_length=50, primary_key=True)
    attempt_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} folded up to attempt {self.attempt_id}"

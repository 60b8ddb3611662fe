"""Simulations and sweeps; their state, attempts and progress live on their worker task."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from workers.models import Task
from workers.states import FINISHED_TASK_STATES, TaskState


def percent(task: Task | None) -> int:
    """How far a task is, 0..100 (a succeeded one is done whatever it last reported)."""
    if task is None:
        return 0
    if task.state == TaskState.SUCCEEDED:
        return 100
    return round((task.progress or 0.0) * 100)


class Sweep(models.Model):
    """A parameter grid of one kind: one simulation per point, then a summary task."""

    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=50)
    parameters = models.JSONField(default=dict, help_text="The parameters shared by every point.")
    grid = models.JSONField(
        default=list, help_text='Axes in order: [{"name": "h", "values": [10, 100]}, ...]'
    )
    priority = models.SmallIntegerField(default=0)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+",
    )
    summary_task = models.ForeignKey(
        "workers.Task", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    summary = models.JSONField(null=True, blank=True, help_text="The comparison table.")
    run = models.OneToOneField(
        "workers.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="sweep",
        help_text="Its points and summary step as a run: graph, pause, resume, cancel.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.name or f"{self.kind} sweep {self.pk}"

    @property
    def axes(self) -> list[str]:
        return [axis["name"] for axis in self.grid]

    @property
    def state(self) -> str:
        return self.summary_task.state if self.summary_task else TaskState.WAITING


class Simulation(models.Model):
    """One run of a kind with its parameters, in its own work directory."""

    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=50, db_index=True)
    parameters = models.JSONField(default=dict)
    memory_mb = models.PositiveIntegerField(help_text="Estimated peak memory of one run.")
    priority = models.SmallIntegerField(default=0)
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+", help_text="Empty when submitted from the command line.",
    )
    task = models.ForeignKey(
        "workers.Task", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    sweep = models.ForeignKey(
        Sweep, null=True, blank=True, on_delete=models.CASCADE, related_name="simulations"
    )
    result = models.JSONField(null=True, blank=True, help_text="The result summary.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.name or f"{self.kind} {self.pk}"

    @property
    def state(self) -> str:
        return self.task.state if self.task else TaskState.WAITING

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED_TASK_STATES

    @property
    def progress_percent(self) -> int:
        return percent(self.task)

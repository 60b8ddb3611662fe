"""Benchmark tasks for django-tasks-db (Django's own @task API)."""

from __future__ import annotations

from django.tasks import task

from peerbench.stamp import record_start


@task
def noop() -> None:
    """Do nothing: measures the queue's own overhead."""


@task
def stamp(sample: int) -> None:
    """Record when this task started, for the pickup-latency measurement."""
    record_start(sample)

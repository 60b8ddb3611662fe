"""Benchmark tasks for django-q2: plain functions, enqueued by dotted path with async_task."""

from __future__ import annotations

from peerbench.stamp import record_start


def noop() -> None:
    """Do nothing: measures the queue's own overhead."""


def stamp(sample: int) -> None:
    """Record when this task started, for the pickup-latency measurement."""
    record_start(sample)

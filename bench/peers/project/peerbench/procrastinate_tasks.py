"""Benchmark tasks for procrastinate (its Django integration's app)."""

from __future__ import annotations

from procrastinate.contrib.django import app

from peerbench.stamp import record_start


@app.task(name="noop")
def noop() -> None:
    """Do nothing: measures the queue's own overhead."""


@app.task(name="stamp")
def stamp(sample: int) -> None:
    """Record when this task started, for the pickup-latency measurement."""
    record_start(sample)

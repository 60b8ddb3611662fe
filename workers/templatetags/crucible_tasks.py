"""Template filters of the task views, for templates whose context another module builds."""

from __future__ import annotations

from typing import Any

from django import template

from ..web import memory_text, tasklist

register = template.Library()


@register.filter
def eta(task: Any) -> str:
    """A running task's ETA from its ``progress`` and ``elapsed`` seconds (a TaskView)."""
    return tasklist.eta_text(getattr(task, "progress", None), getattr(task, "elapsed", 0.0))


@register.filter
def task_memory(worker: Any) -> str:
    """A running task's processes against its estimate, and where the estimate came from
    (a WorkerView with a task): ``250 MB of 312 MB (80 %), estimate learned from 3 runs``."""
    task = worker.task
    if task is None or not task.memory_estimate_mb:
        return ""
    shown = memory_text.estimate(task.memory_estimate_mb, task.memory_source,
                                 task.memory_estimate_runs)
    used = memory_text.in_use(worker.task_rss_bytes, task.memory_estimate_mb)
    return f"{used}, estimate {shown}" if used else f"estimate {shown}"

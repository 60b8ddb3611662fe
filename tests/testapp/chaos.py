"""What the chaos tests share: enqueue a chaos task, judge what it left, stop what they froze."""

from __future__ import annotations

import contextlib
import math
import os
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from workers import queue
from workers.models import Task
from workers.spec import TaskSpec

from .models import Span

CHAOS_TASKS = "tests.testapp.chaos_tasks"


def enqueue(name: str, *args: Any, **fields: Any) -> Task:
    return queue.enqueue(TaskSpec(func_path=f"{CHAOS_TASKS}.{name}", args=list(args), **fields))


def readable(text: str | None) -> bool:
    """Something a person can read and the database stored: not empty, no NUL, valid UTF-8."""
    if not text or not text.strip() or "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def spans_of(task_id: int) -> list[Span]:
    return list(Span.objects.filter(task_id=task_id).order_by("started", "id"))


def overlaps(executions: Iterable[tuple[int, float, float]]) -> list[str]:
    """Pairs of executions of one task that overlap in time.

    ``executions`` are (task id, start, end); an end of ``math.inf`` means "never seen to
    end", which overlaps everything that started after it.
    """
    by_task: dict[int, list[tuple[float, float]]] = {}
    for task_id, start, end in executions:
        by_task.setdefault(task_id, []).append((start, end))
    found = []
    for task_id, runs in sorted(by_task.items()):
        runs.sort()
        latest_end = -math.inf
        for start, end in runs:
            if start < latest_end:
                found.append(f"task {task_id}: an execution started at {start:.3f}, before an "
                             f"earlier one ended ({latest_end:.3f})")
            latest_end = max(latest_end, end)
    return found


def journal(folder: Path) -> list[tuple[int, int, int, float, float, float | None]]:
    """The executions ``chaos_tasks.journaled`` wrote to ``folder``.

    Each is (task id, attempt, worker id, start, last sign of life, end or None).
    """
    found = []
    for path in sorted(folder.glob("*.log")):
        task_id, attempt, worker_id, _pid = (int(part) for part in path.stem.split("-"))
        times: dict[str, float] = {}
        for line in path.read_text().splitlines():
            kind, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                times[kind] = float(value)  # a line cut short by a kill is skipped
        if "start" in times:
            seen = max(times.values())
            found.append((task_id, attempt, worker_id, times["start"], seen, times.get("end")))
    return found


def thaw_and_kill(pid: int) -> None:
    """End a process the test froze with SIGSTOP (and its group, if it leads one)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)

"""A run drawn by dependency level: level 0 needs nothing, level n needs something of n-1."""

from __future__ import annotations

from dataclasses import dataclass

from ..states import TaskState
from .reading import RunReport, TaskLine

DONE = (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)


@dataclass(frozen=True, slots=True)
class Node:
    task: TaskLine

    @property
    def css_state(self) -> str:
        return "skipped" if self.task.skipped else self.task.state.lower()

    @property
    def label(self) -> str:
        return "skipped" if self.task.skipped else self.task.state.lower()


@dataclass(frozen=True, slots=True)
class Graph:
    report: RunReport
    levels: list[list[Node]]

    @property
    def percent(self) -> int:
        total = self.report.total
        return round(100 * self.report.done / total) if total else 0


def levels(tasks: list[TaskLine]) -> list[list[Node]]:
    """Tasks by level; ``tasks`` in id order, which is a dependency order (submission)."""
    level: dict[str, int] = {}
    rows: list[list[Node]] = []
    for task in tasks:
        depth = 1 + max((level.get(name, 0) for name in task.depends_on), default=-1)
        level[task.name] = depth
        while len(rows) <= depth:
            rows.append([])
        rows[depth].append(Node(task))
    return rows


def build(found: RunReport) -> Graph:
    return Graph(found, levels(found.tasks))

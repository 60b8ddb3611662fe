"""What pages and the CLI show of a simulation: labelled parameters, results, log tail."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers import conf
from workers.models import Task
from workers.runtime.logs import log_path

from .registry import Kind
from .schema import number

LOG_READ_BYTES = 256 * 1024
LOG_LINES = 40


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    label: str
    value: str


def value_text(value: object, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{number(value)} {unit}".strip()
    return str(value)


def parameters(kind: Kind, values: dict[str, Any]) -> list[Row]:
    rows = []
    for param in kind.schema.params:
        if param.name in values:
            rows.append(Row(param.name, param.label, param.show(values[param.name])))
    return rows


def results(kind: Kind, summary: dict[str, Any] | None) -> list[Row]:
    """The summary's entries, the kind's metrics first and labelled with their units."""
    if not summary:
        return []
    known = [m for m in kind.metrics if m.key in summary]
    rows = [Row(m.key, m.label, value_text(summary[m.key], m.unit)) for m in known]
    listed = {m.key for m in known}
    rows += [Row(key, key, value_text(value)) for key, value in summary.items()
             if key not in listed]
    return rows


def comparison_rows(comparison: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headings and text cells of a sweep's comparison table."""
    columns = comparison.get("columns", [])
    headings = [f"{c['label']} ({c['unit']})" if c["unit"] else c["label"] for c in columns]
    rows = [[value_text(cell) for cell in row] for row in comparison.get("rows", [])]
    return headings, rows


def log_tail(task: Task | None, lines: int = LOG_LINES) -> str:
    """The task's own lines from its workers' logs; else what its last attempt kept."""
    if task is None:
        return ""
    marker = f"[task {task.pk}] "
    found: list[str] = []
    for worker_id in _worker_ids(task):
        found += [line for line in _tail_lines(log_path(conf.get().log_dir, worker_id))
                  if marker in line]
    if found:
        return "\n".join(sorted(found)[-lines:])  # lines start with their time stamp
    last = task.attempts.order_by("-number").first()
    return last.log_tail if last is not None else ""


def _worker_ids(task: Task) -> list[int]:
    ids = set(task.attempts.filter(worker_id__isnull=False).values_list("worker_id", flat=True))
    if task.worker_id is not None:
        ids.add(task.worker_id)
    return sorted(ids)


def _tail_lines(path: Path) -> list[str]:
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            start = max(handle.tell() - LOG_READ_BYTES, 0)
            handle.seek(start)
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    return lines[1:] if start else lines  # the first line read may be cut


def last_traceback(task: Task | None) -> str:
    if task is None:
        return ""
    last = task.attempts.order_by("-number").first()
    return last.traceback if last is not None else ""

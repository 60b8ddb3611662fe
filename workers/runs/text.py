"""Runs as a terminal shows them: one line per run, a block per run, the pool's summary."""

from __future__ import annotations

from ..models import Run
from .reading import RunReport, Summary, TaskLine

BAR = 20


def bar(done: int, total: int, width: int = BAR) -> str:
    filled = round(width * done / total) if total else 0
    return "[" + "#" * filled + "." * (width - filled) + "]"


def line(run: Run, counts: dict[str, int]) -> str:
    total = sum(counts.values())
    done = sum(n for state, n in counts.items() if state in ("SUCCEEDED", "FAILED", "CANCELLED"))
    return (f"{run.pk:>5} {run.state:<9} {bar(done, total)} {done:>5}/{total:<5} "
            f"{run.name}")


def header() -> str:
    return f"{'ID':>5} {'STATE':<9} {'PROGRESS':<22} {'DONE':>11} NAME"


def _task(task: TaskLine, verbose: bool) -> str:
    after = f" after {', '.join(task.depends_on)}" if task.depends_on else ""
    where = f" worker {task.worker_id}" if task.worker_id else ""
    where += f" (node: {task.node})" if task.node and verbose else ""
    state = "SKIPPED" if task.skipped else task.state
    text = f"  {task.name:<20} {state:<9} task {task.id}{where}{after}"
    if task.waiting_for:
        text += f"\n      waits for lock {task.waiting_for}"
    if verbose and task.error:
        text += f"\n      {task.error.splitlines()[0][:200]}"
    return text


def block(found: RunReport, *, verbose: bool = False) -> str:
    run = found.run
    lines = [f"run {run.pk} {run.name}: {run.state} {bar(found.done, found.total)} "
             f"{found.done}/{found.total}",
             f"  policy {run.failure_policy}, mode {run.mode}"
             + (f", max_parallel {run.max_parallel}" if run.max_parallel else "")]
    if run.reason:
        lines.append(f"  {run.reason}")
    if found.waiting_for:
        lines.append(f"  waits for lock {found.waiting_for}")
    lines += [_task(task, verbose) for task in found.tasks]
    return "\n".join(lines)


def summary(found: Summary) -> str:
    return (
        f"Workers: {found.idle} idle / {found.busy} busy / {found.offline} offline "
        f"(utilization {found.utilization:.0%}) · Runs: {found.active_runs} active / "
        f"{found.total_runs} total · Tasks: {found.completed} completed / {found.failed} failed"
        f" / {found.queued} queued"
    )

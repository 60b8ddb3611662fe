"""The data of the simulation and sweep pages (the admin renders it, nothing more)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workers.models import Task, TaskAttempt
from workers.states import FINISHED_TASK_STATES, TaskState

from . import comparison, display, registry, workdir
from .models import Simulation, Sweep, percent


@dataclass(frozen=True, slots=True)
class Point:
    simulation: Simulation
    values: list[str]
    metric: str


def is_active(task: Task | None) -> bool:
    return task is not None and task.state not in FINISHED_TASK_STATES


def simulation_page(simulation: Simulation) -> dict[str, Any]:
    kind = registry.get(simulation.kind)
    task = simulation.task
    directory = workdir.for_simulation(simulation.pk)
    curves = kind.curves
    return {
        "simulation": simulation,
        "kind": kind,
        "task": task,
        "state": simulation.state,
        "percent": percent(task),
        "active": is_active(task),
        "parameters": display.parameters(kind, simulation.parameters),
        "results": display.results(kind, simulation.result),
        "has_plot": curves is not None and (directory / curves.filename).is_file(),
        "files": workdir.files(directory),
        "log_tail": display.log_tail(task),
        "traceback": display.last_traceback(task),
        "attempts": _attempts(task),
    }


def _attempts(task: Task | None) -> list[TaskAttempt]:
    return [] if task is None else list(task.attempts.order_by("number"))


def sweep_page(sweep: Sweep) -> dict[str, Any]:
    kind = registry.get(sweep.kind)
    simulations = list(sweep.simulations.select_related("task").order_by("pk"))
    table = sweep.summary or {}
    headings, rows = display.comparison_rows(table)
    directory = workdir.for_sweep(sweep.pk)
    summary_task = sweep.summary_task
    tasks = [point.task for point in simulations]
    metric = shown_metric(sweep, kind, simulations)
    return {
        "sweep": sweep,
        "kind": kind,
        "axes": [(kind.schema.get(a["name"]), ", ".join(display.value_text(v) for v in a["values"]))
                 for a in sweep.grid],
        "points": [_point(kind, metric, point, sweep.axes) for point in simulations],
        "metric": metric,
        "summary_task": summary_task,
        "percent": round(sum(percent(t) for t in tasks) / len(tasks)) if tasks else 0,
        "done": sum(1 for t in tasks if t is not None and t.state == TaskState.SUCCEEDED),
        "active": any(is_active(t) for t in [*tasks, summary_task]),
        "headings": headings,
        "rows": rows,
        "has_plot": (directory / comparison.PLOT_FILE).is_file(),
        "plot_file": comparison.PLOT_FILE,
        "files": workdir.files(directory),
        "parameters": display.parameters(kind, sweep.parameters),
    }


def shown_metric(sweep: Sweep, kind: registry.Kind,
                 simulations: list[Simulation]) -> registry.Metric | None:
    """The metric of the points table: the comparison's, else the first one every finished
    point has, else the kind's first."""
    results = [point.result for point in simulations if point.result]
    key = ((sweep.summary or {}).get("metric")
           or (comparison.main_metric(kind.metrics, results) if results else None)
           or (kind.metrics[0].key if kind.metrics else None))
    return kind.metric(key) if key else None


def _point(kind: registry.Kind, metric: registry.Metric | None, simulation: Simulation,
           axes: list[str]) -> Point:
    values = [kind.schema.get(name).show(simulation.parameters.get(name)) for name in axes]
    value = (simulation.result or {}).get(metric.key) if metric else None
    return Point(simulation, values, display.value_text(value, metric.unit if metric else ""))

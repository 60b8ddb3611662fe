"""A sweep's comparison table: one row per point, its axis values and result metrics."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .models import Simulation, Sweep
from .registry import Kind, Metric

CSV_FILE = "comparison.csv"
JSON_FILE = "comparison.json"
PLOT_FILE = "comparison.png"


def table(sweep: Sweep, kind: Kind, points: list[Simulation]) -> dict[str, Any]:
    """``{"columns": [...], "rows": [[...]], "axes": [...], "metric": key}``, JSON-ready."""
    results = [point.result or {} for point in points]
    metrics = [m for m in kind.metrics if any(_number(r.get(m.key)) for r in results)]
    columns: list[dict[str, str]] = [{"key": "simulation", "label": "Simulation", "unit": ""}]
    for name in sweep.axes:
        param = kind.schema.get(name)
        columns.append({"key": name, "label": param.label, "unit": param.unit})
    columns += [{"key": m.key, "label": m.label, "unit": m.unit} for m in metrics]
    rows = []
    for point, result in zip(points, results, strict=True):
        row: list[Any] = [point.pk, *(point.parameters.get(name) for name in sweep.axes)]
        rows.append(row + [result.get(m.key) for m in metrics])
    return {"columns": columns, "rows": rows, "axes": sweep.axes,
            "metric": main_metric(metrics, results)}


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def main_metric(metrics: Sequence[Metric], results: list[dict[str, Any]]) -> str | None:
    """The first metric every point has a number for (the plot's y axis)."""
    for metric in metrics:
        if all(_number(result.get(metric.key)) for result in results):
            return str(metric.key)
    return None


def write_csv(path: Path, comparison: dict[str, Any]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(_heading(column) for column in comparison["columns"])
        writer.writerows(comparison["rows"])


def _heading(column: dict[str, str]) -> str:
    return f"{column['key']} ({column['unit']})" if column["unit"] else column["key"]


def column(comparison: dict[str, Any], key: str) -> list[Any]:
    index = [c["key"] for c in comparison["columns"]].index(key)
    return [row[index] for row in comparison["rows"]]

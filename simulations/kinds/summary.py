"""The summary step of a sweep: after every point succeeded, compare them (CSV, JSON, plot)."""

from __future__ import annotations

from typing import Any

from django.tasks import task

from .. import comparison, registry, runner, workdir
from ..models import Sweep


@task
def summarise(sweep_id: int) -> dict[str, Any]:
    """Write the sweep's comparison table and plot into its work directory."""
    sweep = Sweep.objects.get(pk=sweep_id)
    kind = registry.get(sweep.kind)
    points = list(sweep.simulations.order_by("pk"))
    progress = runner.progress_reporter()
    progress(0.1, f"comparing {len(points)} points")
    table = comparison.table(sweep, kind, points)
    directory = workdir.fresh(workdir.for_sweep(sweep.pk))
    comparison.write_csv(directory / comparison.CSV_FILE, table)
    workdir.write_json(directory / comparison.JSON_FILE, table)
    progress(0.5, "plotting")
    from .. import plots  # matplotlib only in the process that plots

    plotted = plots.comparison_png(table, kind, directory / comparison.PLOT_FILE)
    sweep.summary = table
    sweep.save(update_fields=["summary"])
    return {"points": len(points), "metric": table["metric"], "plot": plotted}

"""What every kind's task does around its computation: load, prepare, report, record.

Runs inside a worker's executor (or in-process, e.g. in tests or with Django's immediate
tasks backend, where progress reports are dropped).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from workers import context

from . import registry, workdir
from .models import Simulation
from .schema import Params

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
Body = Callable[[Params, Path, Progress], dict[str, Any]]
SUMMARY_FILE = "summary.json"


def progress_reporter() -> Progress:
    """Report to the running task, or nowhere when not run by a worker."""
    try:
        ctx = context.current()
    except RuntimeError:
        return lambda fraction, message: None

    def report(fraction: float, message: str) -> None:
        ctx.progress(min(max(fraction, 0.0), 1.0), message)

    return report


def execute(simulation_id: int, body: Body) -> dict[str, Any]:
    """Run ``body`` for a simulation in a fresh work directory and store its summary."""
    simulation = Simulation.objects.get(pk=simulation_id)
    params = registry.get(simulation.kind).clean(simulation.parameters)
    directory = workdir.fresh(workdir.for_simulation(simulation.pk))
    logger.info("simulation %s (%s) in %s", simulation.pk, simulation.kind, directory)
    summary = body(params, directory, progress_reporter())
    workdir.write_json(directory / SUMMARY_FILE, summary)
    simulation.result = summary
    simulation.save(update_fields=["result"])
    return summary

"""When a simulation or sweep row goes, its unfinished task is cancelled and (per
SIMULATIONS_KEEP_WORK_DIRS) its work directory removed once the deletion is committed."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver

from workers import queue, runs
from workers.exceptions import TaskNotFound
from workers.models import Task
from workers.runs import RunConflict, RunNotFound
from workers.states import FINISHED_TASK_STATES

from . import workdir
from .models import Simulation, Sweep

logger = logging.getLogger(__name__)


def _stop(task_id: int | None) -> None:
    if task_id is None:
        return
    if Task.objects.filter(pk=task_id).exclude(state__in=FINISHED_TASK_STATES).exists():
        try:
            queue.cancel(task_id)
        except TaskNotFound:
            return


def _cancel_run(run_id: int) -> None:
    """Its points that have not ended stop with it (the run's record stays, for its page)."""
    try:
        runs.cancel(run_id, by="the deletion of its sweep")
    except (RunNotFound, RunConflict):  # gone, or already over
        return


@receiver(post_delete, sender=Simulation, dispatch_uid="simulations.simulation_deleted")
def simulation_deleted(sender: type[Simulation], instance: Simulation, **kwargs: Any) -> None:
    _stop(instance.task_id)
    directory = workdir.for_simulation(instance.pk)
    transaction.on_commit(lambda: workdir.discard(directory))


@receiver(post_delete, sender=Sweep, dispatch_uid="simulations.sweep_deleted")
def sweep_deleted(sender: type[Sweep], instance: Sweep, **kwargs: Any) -> None:
    if instance.run_id is not None:
        _cancel_run(instance.run_id)
    else:  # a sweep from before sweeps were runs
        _stop(instance.summary_task_id)
    directory = workdir.for_sweep(instance.pk)
    transaction.on_commit(lambda: workdir.discard(directory))

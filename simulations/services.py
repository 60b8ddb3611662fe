"""Submitting, cancelling and sweeping simulations: validate everything, then write it all in
one transaction (a refusal writes nothing), and enqueue through the workers' queue."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from django.db import transaction

from workers import conf, learning, queue
from workers.exceptions import InvalidTaskSpec
from workers.models import Task
from workers.models.task import MAX_PRIORITY, MIN_PRIORITY
from workers.spec import TaskSpec
from workers.states import FINISHED_TASK_STATES

from . import grid, registry
from .exceptions import InvalidParameters, ParameterError
from .kinds import summary
from .models import Simulation, Sweep
from .registry import Kind
from .schema import Param, Params, ParamType, Schema, number, real, whole

logger = logging.getLogger(__name__)

# The summary step imports matplotlib: a larger process than most points.
SUMMARY_MEMORY_MB = 200



def options_schema() -> Schema:
    """Priority and timeout; a worker never lets a task run past WORKER_TASK_TIMEOUT."""
    longest = conf.get().task_timeout
    return Schema((
        Param("priority", ParamType.INT, "Priority", 0, "", MIN_PRIORITY, MAX_PRIORITY,
              help="Higher runs first"),
        Param("timeout", ParamType.FLOAT, "Timeout", None, "s", 1.0, longest, optional=True,
              help=f"Seconds one attempt may run (default {number(longest)})"),
    ))


@dataclass(frozen=True, slots=True)
class Options:
    """How to run, as opposed to what to compute."""

    name: str = ""
    priority: object = 0
    timeout: object = None
    user_id: int | None = None
    force: bool = False  # queue it even if it needs more memory than any node's budget

    def clean(self) -> tuple[int, float | None]:
        values = options_schema().clean({"priority": self.priority, "timeout": self.timeout})
        timeout = None if values["timeout"] is None else real(values, "timeout")
        return whole(values, "priority"), timeout


def submit(kind_name: str, parameters: Mapping[str, object],
           options: Options | None = None) -> Simulation:
    """Validate and enqueue one simulation; InvalidParameters (nothing written) if refused."""
    options = options or Options()
    kind = registry.get(kind_name)
    params, (priority, timeout) = _validate(lambda: kind.clean(dict(parameters)), options)
    with transaction.atomic():
        return _create(kind, params, name=options.name, priority=priority, timeout=timeout,
                       user_id=options.user_id, force=options.force)


def check(kind_name: str, parameters: Mapping[str, object],
          axes: Sequence[tuple[str, Sequence[object]]], options: Options) -> None:
    """Validate a simulation (or a sweep, given axes) as submitting would; write nothing."""
    kind = registry.get(kind_name)
    if axes:
        _validate(lambda: grid.build(kind, parameters, axes), options)
    else:
        _validate(lambda: kind.clean(dict(parameters)), options)


def submit_sweep(kind_name: str, parameters: Mapping[str, object],
                 axes: Sequence[tuple[str, Sequence[object]]],
                 options: Options | None = None) -> Sweep:
    """One simulation per grid point, then a summary task that waits for all of them."""
    options = options or Options()
    kind = registry.get(kind_name)
    built, (priority, timeout) = _validate(lambda: grid.build(kind, parameters, axes), options)
    names = [axis.name for axis in built.axes]
    with transaction.atomic():
        sweep = Sweep.objects.create(
            name=options.name, kind=kind.name, priority=priority, submitted_by_id=options.user_id,
            parameters={k: v for k, v in built.points[0].items() if k not in names},
            grid=[axis.as_json() for axis in built.axes],
        )
        points = [
            _create(kind, point, name=_point_name(sweep, kind, point, names), priority=priority,
                    timeout=timeout, user_id=options.user_id, sweep=sweep, force=options.force)
            for point in built.points
        ]
        sweep.summary_task = _enqueue(TaskSpec(
            func_path=summary.summarise.module_path, kwargs={"sweep_id": sweep.pk},
            priority=priority, memory_mb=SUMMARY_MEMORY_MB,
            depends_on=[point.task_id for point in points if point.task_id is not None],
        ))
        sweep.save(update_fields=["summary_task"])
    logger.info("sweep %s: %s points of %s", sweep.pk, len(points), kind.name)
    return sweep


def _validate[T](check: Callable[[], T], options: Options) -> tuple[T, tuple[int, float | None]]:
    """Run both validations, so that every refused field is reported at once."""
    errors: list[ParameterError] = []
    checked = cleaned = None
    try:
        checked = check()
    except InvalidParameters as exc:
        errors += exc.errors
    try:
        cleaned = options.clean()
    except InvalidParameters as exc:
        errors += exc.errors
    if errors or checked is None or cleaned is None:
        raise InvalidParameters(errors)
    return checked, cleaned


def _create(kind: Kind, params: Params, *, name: str, priority: int, timeout: float | None,
            user_id: int | None, sweep: Sweep | None = None, force: bool = False
            ) -> Simulation:
    learned = _learned(kind, params)
    simulation = Simulation.objects.create(
        name=name, kind=kind.name, parameters=params,
        memory_mb=learned.mb if learned else kind.memory_mb(params),
        priority=priority, submitted_by_id=user_id, sweep=sweep,
    )
    simulation.task = _enqueue(TaskSpec(
        func_path=kind.func_path, kwargs={"simulation_id": simulation.pk},
        memory_mb=None if learned else simulation.memory_mb, priority=priority,
        timeout=timeout, force=force,
    ))
    simulation.save(update_fields=["task"])
    return simulation


def _learned(kind: Kind, params: Params) -> learning.Learned | None:
    """The kind's estimate learned from its measured runs (per unit of its scale), once
    there is one: then the task declares none and the estimate says "learned"; until then
    the kind's formula is declared."""
    scale = kind.memory_scale(params) if kind.memory_scale is not None else None
    return learning.learned(kind.func_path, scale)


def _enqueue(spec: TaskSpec) -> Task:
    try:
        return queue.enqueue(spec)
    except InvalidTaskSpec as exc:
        raise InvalidParameters.one(exc.field, exc.message) from exc


def _point_name(sweep: Sweep, kind: Kind, point: Params, names: list[str]) -> str:
    values = ", ".join(f"{name}={kind.schema.get(name).show(point[name])}" for name in names)
    return f"{sweep.name or f'sweep {sweep.pk}'}: {values}"


def cancel(simulation: Simulation) -> Task | None:
    """Cancel the simulation's task (at once if not started, else its worker stops it)."""
    if simulation.task_id is None:
        return None
    return queue.cancel(simulation.task_id)


def cancel_sweep(sweep: Sweep) -> int:
    """Cancel every unfinished point and the summary; return how many were asked."""
    tasks = [point.task_id for point in sweep.simulations.all() if point.task_id is not None]
    if sweep.summary_task_id is not None:
        tasks.append(sweep.summary_task_id)
    unfinished = Task.objects.filter(pk__in=tasks).exclude(state__in=FINISHED_TASK_STATES)
    ids = list(unfinished.values_list("pk", flat=True))
    for task_id in ids:
        queue.cancel(task_id)
    return len(ids)

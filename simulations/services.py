"""Submitting, cancelling and sweeping simulations: validate everything, then write it all in
one transaction (a refusal writes nothing), and enqueue through the workers' queue."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import transaction

from workers import conf, queue, runs
from workers.exceptions import InvalidTaskSpec
from workers.models import Run, Task
from workers.models.run import FailurePolicy
from workers.models.task import MAX_PRIORITY, MIN_PRIORITY
from workers.pool import learning
from workers.runs import InvalidRun, RunSpec, TaskEntry
from workers.runs.document import MAX_RUN_NAME, MAX_TASK_NAME
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
SUMMARY_NAME = "summary"  # the summary step's name in the sweep's run



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
    """One simulation per grid point, then a summary step that waits for all of them: a run
    (``workers.runs``), so the sweep has its graph, pause, resume and cancel. A point that
    fails skips the summary and lets the other points finish (failure policy ``continue``)."""
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
        made = [_simulation(kind, point, name=_point_name(sweep, kind, point, names),
                            priority=priority, user_id=options.user_id, sweep=sweep)
                for point in built.points]
        entries = [
            TaskEntry(f"{index + 1}: {_values(kind, point.parameters, names)}"[:MAX_TASK_NAME],
                      _point_spec(kind, point, declared, priority=priority, timeout=timeout,
                                  force=options.force),
                      index=index)
            for index, (point, declared) in enumerate(made)]
        points = [point for point, _ in made]
        summary_entry = TaskEntry(SUMMARY_NAME, TaskSpec(
            func_path=summary.summarise.module_path, kwargs={"sweep_id": sweep.pk},
            priority=priority, memory_mb=SUMMARY_MEMORY_MB, force=options.force,
        ), depends_on=tuple(entry.name for entry in entries), index=len(entries))
        run = _start_run(RunSpec(name=str(sweep)[:MAX_RUN_NAME],
                                 tasks=(*entries, summary_entry),
                                 failure_policy=FailurePolicy.CONTINUE), options.user_id)
        ids = dict(Task.objects.filter(run=run).values_list("name", "pk"))
        for point, entry in zip(points, entries, strict=True):
            point.task_id = ids[entry.name]
        Simulation.objects.bulk_update(points, ["task"])
        sweep.run, sweep.summary_task_id = run, ids[SUMMARY_NAME]
        sweep.save(update_fields=["run", "summary_task"])
    logger.info("sweep %s: %s points of %s, run %s", sweep.pk, len(points), kind.name, run.pk)
    return sweep


def _start_run(spec: RunSpec, user_id: int | None) -> Run:
    by = "" if user_id is None else str(
        get_user_model().objects.filter(pk=user_id).values_list("username", flat=True).first()
        or "")
    try:
        return runs.create(spec, by=by)
    except InvalidRun as exc:  # a point no node could ever run: say which field, as one does
        raise InvalidParameters.one(exc.field.rpartition(".")[2], exc.message) from exc


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
            user_id: int | None, force: bool = False) -> Simulation:
    simulation, declared = _simulation(kind, params, name=name, priority=priority,
                                       user_id=user_id)
    simulation.task = _enqueue(_point_spec(kind, simulation, declared, priority=priority,
                                                       timeout=timeout, force=force))
    simulation.save(update_fields=["task"])
    return simulation


def _simulation(kind: Kind, params: Params, *, name: str, priority: int,
                user_id: int | None, sweep: Sweep | None = None) -> tuple[Simulation, int | None]:
    """Its row, and the memory its task declares: the kind's formula, or none once an
    estimate is learned (then the queue's own estimate says "learned")."""
    learned = _learned(kind, params)
    simulation = Simulation.objects.create(
        name=name, kind=kind.name, parameters=params,
        memory_mb=learned.mb if learned else kind.memory_mb(params),
        priority=priority, submitted_by_id=user_id, sweep=sweep,
    )
    return simulation, None if learned else simulation.memory_mb


def _point_spec(kind: Kind, simulation: Simulation, declared_mb: int | None, *,
                priority: int, timeout: float | None, force: bool) -> TaskSpec:
    return TaskSpec(
        func_path=kind.func_path, kwargs={"simulation_id": simulation.pk},
        memory_mb=declared_mb, priority=priority,
        timeout=timeout, force=force,
    )


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
    return f"{sweep.name or f'sweep {sweep.pk}'}: {_values(kind, point, names)}"


def _values(kind: Kind, point: Params, names: list[str]) -> str:
    return ", ".join(f"{name}={kind.schema.get(name).show(point[name])}" for name in names)


def cancel(simulation: Simulation) -> Task | None:
    """Cancel the simulation's task (at once if not started, else its worker stops it)."""
    if simulation.task_id is None:
        return None
    return queue.cancel(simulation.task_id)


def cancel_sweep(sweep: Sweep, *, by: str = "") -> int:
    """Cancel every unfinished point and the summary (the sweep's run, its reason naming
    ``by``); return how many."""
    tasks = [point.task_id for point in sweep.simulations.all() if point.task_id is not None]
    if sweep.summary_task_id is not None:
        tasks.append(sweep.summary_task_id)
    unfinished = Task.objects.filter(pk__in=tasks).exclude(state__in=FINISHED_TASK_STATES)
    ids = list(unfinished.values_list("pk", flat=True))
    if sweep.run is not None and sweep.run.is_active:
        runs.cancel(sweep.run.pk, by=by)
        return len(ids)
    for task_id in ids:  # a sweep from before sweeps were runs
        queue.cancel(task_id)
    return len(ids)

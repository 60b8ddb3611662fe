"""The simulation kinds: name -> task function, parameter schema, memory estimate, label.

Each module under ``simulations.kinds`` registers its kind when imported; ``get`` and
``kinds`` import that package on first use, so nothing heavy is loaded before it is needed.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.tasks import Task as DjangoTask

from workers.pool import learning

from .exceptions import InvalidParameters, UnknownKind
from .schema import Params, Schema

KINDS_PACKAGE = "simulations.kinds"
_kinds: dict[str, Kind] = {}


@dataclass(frozen=True, slots=True)
class Metric:
    """One entry of a result summary, as shown in tables and sweep comparisons."""

    key: str
    label: str
    unit: str = ""


@dataclass(frozen=True, slots=True)
class Curves:
    """The CSV a run writes for its main plot: first column on x, the others as lines."""

    filename: str
    title: str
    x_label: str
    y_label: str
    level_key: str = ""  # a result entry drawn as a dashed horizontal line (e.g. a target)


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    label: str
    task: DjangoTask[..., Any]
    schema: Schema
    memory_mb: Callable[[Params], int]
    description: str = ""
    # What its memory grows with (e.g. grid points x samples): its learned estimate is
    # per unit of this; None: one figure for every run of the kind.
    memory_scale: Callable[[Params], float] | None = None
    metrics: tuple[Metric, ...] = ()
    curves: Curves | None = None
    check: Callable[[Params], None] | None = None

    @property
    def func_path(self) -> str:
        return self.task.module_path

    def clean(self, raw: dict[str, object]) -> Params:
        """Typed, range-checked parameters, then the kind's own cross-checks."""
        values = self.schema.clean(raw)
        if self.check is not None:
            self.check(values)
        return values

    def metric(self, key: str) -> Metric:
        for metric in self.metrics:
            if metric.key == key:
                return metric
        return Metric(key, key.replace("_", " "))


def register(kind: Kind) -> Kind:
    if kind.name in _kinds and _kinds[kind.name].func_path != kind.func_path:
        raise ValueError(f"simulation kind {kind.name!r} is already registered")
    _kinds[kind.name] = kind
    if kind.memory_scale is not None:
        learning.scale_by(kind.func_path, functools.partial(_scale_of_run, kind.memory_scale))
    return kind


def _scale_of_run(scale: Callable[[Params], float], kwargs: dict[str, Any]) -> float | None:
    """The scale of the Simulation row a kind's task runs (its only argument)."""
    from .models import Simulation

    run = kwargs.get("simulation_id")
    if not isinstance(run, int):
        return None
    found = Simulation.objects.filter(pk=run).values_list("parameters", flat=True).first()
    return None if found is None else scale(found)


def _load() -> None:
    importlib.import_module(KINDS_PACKAGE)


def kinds() -> list[Kind]:
    _load()
    return sorted(_kinds.values(), key=lambda kind: kind.name)


def get(name: str) -> Kind:
    _load()
    try:
        return _kinds[name]
    except KeyError:
        known = ", ".join(sorted(_kinds))
        raise UnknownKind(f"no simulation kind {name!r} (known: {known})") from None


def refuse(name: str, message: str) -> None:
    """For a kind's cross-check: refuse one parameter."""
    raise InvalidParameters.one(name, message)

"""Sweep grids: ``name=v1,v2,...`` axes, validated value by value, expanded into points."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .exceptions import InvalidParameters, ParameterError
from .registry import Kind
from .schema import Params, Value

MAX_POINTS = 1000


@dataclass(frozen=True, slots=True)
class Axis:
    name: str
    values: tuple[Value, ...]

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "values": list(self.values)}


@dataclass(frozen=True, slots=True)
class Grid:
    axes: tuple[Axis, ...]
    points: tuple[Params, ...]  # every point's full, cleaned parameters


def parse_axis(text: str) -> tuple[str, list[str]]:
    """``h=10,100,1000`` -> ("h", ["10", "100", "1000"]); ValueError when malformed."""
    name, sep, raw = text.partition("=")
    values = [value.strip() for value in raw.split(",") if value.strip()]
    if not sep or not name.strip() or not values:
        raise ValueError(f"expected name=value1,value2,..., got {text!r}")
    return name.strip(), values


def parse_axes(text: str) -> list[tuple[str, list[str]]]:
    """Axes one per line or separated by ``;`` (the admin form's sweep field)."""
    parts = [part.strip() for part in text.replace("\n", ";").split(";")]
    return [parse_axis(part) for part in parts if part]


def build(kind: Kind, base: Mapping[str, object],
          axes: Sequence[tuple[str, Sequence[object]]]) -> Grid:
    """Clean every axis value and every point; InvalidParameters names what is wrong."""
    cleaned = _clean_axes(kind, base, axes)
    count = 1
    for axis in cleaned:
        count *= len(axis.values)
    if count > MAX_POINTS:
        raise InvalidParameters.one("sweep", f"{count} points is more than {MAX_POINTS}")
    points = []
    for combination in itertools.product(*(axis.values for axis in cleaned)):
        overrides = {axis.name: value for axis, value in zip(cleaned, combination, strict=True)}
        points.append(kind.clean({**base, **overrides}))
    return Grid(tuple(cleaned), tuple(points))


def _clean_axes(kind: Kind, base: Mapping[str, object],
                axes: Sequence[tuple[str, Sequence[object]]]) -> list[Axis]:
    errors: list[ParameterError] = []
    cleaned: list[Axis] = []
    seen: set[str] = set()
    for name, values in axes:
        if name in seen or name in base:
            errors.append(ParameterError(name, "given twice (as a sweep axis and a parameter "
                                               "or as two sweep axes)"))
            continue
        seen.add(name)
        try:
            param = kind.schema.get(name)
            unique = dict.fromkeys(param.clean(value) for value in values)
            cleaned.append(Axis(name, tuple(unique)))
        except InvalidParameters as exc:
            errors += exc.errors
    if not axes:
        errors.append(ParameterError("sweep", "needs at least one axis, e.g. h=10,100,1000"))
    if errors:
        raise InvalidParameters(errors + _base_errors(kind, base))
    return cleaned


def _base_errors(kind: Kind, base: Mapping[str, object]) -> list[ParameterError]:
    """The shared parameters' own refusals (the cross-checks need every axis's values)."""
    try:
        kind.schema.clean(base)
    except InvalidParameters as exc:
        return exc.errors
    return []

"""Parameter schemas: types, ranges, defaults and units, and the one validation of them all.

Values arrive typed (JSON, Python) or as text (CLI, forms); both go through ``Param.clean``
so the web, the CLI and scripts refuse a bad value with the same message, which names the
parameter and its allowed range: ``h: 5e6 is outside 1..1e5 W/m²K``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from .exceptions import InvalidParameters, ParameterError

Value = float | int | bool | str | None
Params = dict[str, Value]

TRUE_WORDS = frozenset({"true", "yes", "on", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "0"})


class ParamType(StrEnum):
    FLOAT = "float"
    INT = "int"
    BOOL = "bool"
    CHOICE = "choice"


class _Missing:
    pass


MISSING = _Missing()


def number(value: float) -> str:
    """Compact, exact-enough text for a number: 1, 0.05, 1e5, 2592000, 2.5e-4."""
    if value == int(value) and abs(value) < 1e15:
        whole = int(value)
        if abs(whole) < 10**5 or len(str(abs(whole)).rstrip("0")) > 2:
            return str(whole)
        return _scientific(value)
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return _scientific(value)
    return f"{value:.6g}"


def _scientific(value: float) -> str:
    mantissa, _, exponent = f"{value:.6e}".partition("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a kind."""

    name: str
    type: ParamType
    label: str
    default: Value = None
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    optional: bool = False
    help: str = ""

    def range_text(self) -> str:
        """``1..1e5 W/m²K``, ``at least 3``, or the choices."""
        if self.choices:
            return ", ".join(self.choices)
        low = None if self.minimum is None else number(self.minimum)
        high = None if self.maximum is None else number(self.maximum)
        if low is not None and high is not None:
            bounds = f"{low}..{high}"
        elif low is not None:
            bounds = f"at least {low}"
        elif high is not None:
            bounds = f"at most {high}"
        else:
            bounds = ""
        return f"{bounds} {self.unit}".strip()

    def describe(self) -> str:
        """Help text for forms and ``--help``: unit, range, default."""
        parts = [self.help] if self.help else []
        if self.type in (ParamType.FLOAT, ParamType.INT, ParamType.CHOICE):
            parts.append(f"allowed: {self.range_text()}")
        if self.default is not None:
            parts.append(f"default {self.show(self.default)}")
        elif self.optional:
            parts.append("optional")
        return "; ".join(parts)

    def show(self, value: Value) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, int | float):
            return f"{number(value)} {self.unit}".strip()
        return value

    def clean(self, raw: object) -> Value:
        """The typed, checked value for ``raw``; raises InvalidParameters naming this one."""
        if raw is MISSING or raw is None or (isinstance(raw, str) and not raw.strip()):
            return self._absent()
        if self.type is ParamType.BOOL:
            return self._boolean(raw)
        if self.type is ParamType.CHOICE:
            return self._choice(raw)
        value = self._integer(raw) if self.type is ParamType.INT else self._float(raw)
        self._check_range(value)
        return value

    def _refuse(self, message: str) -> InvalidParameters:
        return InvalidParameters.one(self.name, message)

    def _absent(self) -> Value:
        if self.default is not None or self.optional:
            return self.default
        raise self._refuse("is required")

    def _float(self, raw: object) -> float:
        if isinstance(raw, bool) or not isinstance(raw, int | float | str):
            raise self._refuse(f"expected a number, got {raw!r}")
        try:
            value = float(raw)
        except ValueError:
            raise self._refuse(f"expected a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise self._refuse(f"expected a finite number, got {raw!r}")
        return value

    def _integer(self, raw: object) -> int:
        value = self._float(raw)
        if value != int(value):
            raise self._refuse(f"expected a whole number, got {raw!r}")
        return int(value)

    def _boolean(self, raw: object) -> bool:
        if isinstance(raw, bool):
            return raw
        word = str(raw).strip().lower() if isinstance(raw, str | int) else ""
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        raise self._refuse(f"expected yes or no (true/false), got {raw!r}")

    def _choice(self, raw: object) -> str:
        if isinstance(raw, str) and raw.strip() in self.choices:
            return raw.strip()
        raise self._refuse(f"{raw!r} is not one of {', '.join(self.choices)}")

    def _check_range(self, value: float) -> None:
        low, high = self.minimum, self.maximum
        below = low is not None and value < low
        above = high is not None and value > high
        if below or above:
            where = "outside" if low is not None and high is not None else "not"
            raise self._refuse(f"{number(value)} is {where} {self.range_text()}")


@dataclass(frozen=True, slots=True)
class Schema:
    """The ordered parameters of a kind."""

    params: tuple[Param, ...]

    def names(self) -> list[str]:
        return [param.name for param in self.params]

    def get(self, name: str) -> Param:
        for param in self.params:
            if param.name == name:
                return param
        raise InvalidParameters.one(name, f"unknown parameter (known: {', '.join(self.names())})")

    def defaults(self) -> Params:
        return {param.name: param.default for param in self.params}

    def clean(self, raw: Mapping[str, object]) -> Params:
        """Every parameter typed and checked, defaults filled in; all errors at once."""
        errors: list[ParameterError] = []
        for name in raw:
            if name not in self.names():
                errors += self._unknown(name)
        values: Params = {}
        for param in self.params:
            try:
                values[param.name] = param.clean(raw.get(param.name, MISSING))
            except InvalidParameters as exc:
                errors += exc.errors
        if errors:
            raise InvalidParameters(errors)
        return values

    def _unknown(self, name: str) -> list[ParameterError]:
        try:
            self.get(name)
        except InvalidParameters as exc:
            return exc.errors
        return []


def real(params: Params, name: str) -> float:
    """A cleaned number parameter as a float."""
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} is not a number: {value!r}")
    return float(value)


def whole(params: Params, name: str) -> int:
    """A cleaned whole-number parameter."""
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} is not a whole number: {value!r}")
    return value

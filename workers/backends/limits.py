"""Crucible's per-task limits, as ``@task(...)`` keywords and as backend OPTIONS."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

MAX_QUEUE_LENGTH = 100  # Task.queue is a CharField(max_length=100)


@dataclass(frozen=True, slots=True)
class Rule:
    kinds: tuple[type, ...]
    accepts: Callable[[float], bool]
    expected: str


RULES: dict[str, Rule] = {
    "max_attempts": Rule((int,), lambda v: v >= 1, "a whole number, at least 1"),
    "timeout": Rule((int, float), lambda v: v > 0, "a number of seconds greater than 0"),
    "memory_mb": Rule((int,), lambda v: v >= 1, "a whole number of megabytes, at least 1"),
    "retry_backoff": Rule((int, float), lambda v: v >= 0, "a number of seconds, 0 or more"),
}


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits of one task; None leaves the choice to the next level (backend, then WORKER_*)."""

    max_attempts: int | None = None
    timeout: float | None = None
    memory_mb: int | None = None
    retry_backoff: float | None = None

    def over(self, fallback: Limits) -> Limits:
        """These limits, with ``fallback``'s wherever these are unset."""
        chosen = {
            f.name: getattr(fallback, f.name) if getattr(self, f.name) is None
            else getattr(self, f.name)
            for f in fields(self)
        }
        return Limits(**chosen)


def problem(name: str, value: object) -> str | None:
    """Why ``value`` cannot be the limit ``name``; None when it can."""
    if value is None:
        return None
    rule = RULES[name]
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not isinstance(number, rule.kinds):
        return f"{name} must be {rule.expected}, not {value!r}"
    if not math.isfinite(number) or not rule.accepts(number):
        return f"{name} must be {rule.expected}, not {value!r}"
    return None


def of(source: object) -> Limits:
    """The limits an object (a task) declares as attributes; missing ones are None."""
    return Limits(**{name: getattr(source, name, None) for name in RULES})


def from_options(options: object) -> tuple[Limits, list[str]]:
    """Backend-wide defaults from OPTIONS, and every problem found in them."""
    if not isinstance(options, Mapping):
        return Limits(), [f"OPTIONS must be a dict, not {type(options).__name__}"]
    problems = [
        f"OPTIONS has an unknown key {key!r}; expected some of {', '.join(RULES)}"
        for key in options
        if key not in RULES
    ]
    values: dict[str, Any] = {}
    for name in RULES:
        found = problem(name, options.get(name))
        if found:
            problems.append(f"OPTIONS: {found}")
        else:
            values[name] = options.get(name)
    return Limits(**values), problems

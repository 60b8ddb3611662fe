"""Validation of what a task may be: a module-level function, JSON arguments, sane limits."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.tasks import Task as DjangoTask
from django.utils.module_loading import import_string

from .exceptions import CallMismatch, InvalidTaskSpec
from .models.task import MAX_PRIORITY, MIN_PRIORITY


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """Everything needed to enqueue one task, already validated."""

    func_path: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str = ""
    priority: int = 0
    max_attempts: int | None = None
    timeout: float | None = None
    memory_mb: int | None = None
    run_after: datetime | None = None
    retry_backoff: float | None = None
    depends_on: list[int] = field(default_factory=list)
    cpus: int = 1
    memory_limit_mb: int | None = None
    force: bool = False  # queue it even if it is larger than every node's budget


def resolve(func_path: str) -> Callable[..., Any]:
    """Import the function a task names; refuse anything but a module-level function."""
    module_name, _, name = func_path.rpartition(".")
    if not module_name or not name:
        raise InvalidTaskSpec("func_path", f"{func_path!r} is not a dotted path module.function")
    try:
        target = import_string(func_path)
    except ImportError as exc:
        raise InvalidTaskSpec("func_path", f"cannot import {func_path!r}: {exc}") from exc
    except Exception as exc:  # the module itself failed while it was imported
        raise InvalidTaskSpec("func_path", f"cannot import {func_path!r}: "
                                           f"{type(exc).__name__}: {exc}") from exc
    task = target if isinstance(target, DjangoTask) else None
    if task is not None:
        target = task.func
    if not inspect.isfunction(target):
        kind = type(target).__name__
        article = "an" if kind[:1].lower() in "aeiou" else "a"
        raise InvalidTaskSpec("func_path", f"{func_path!r} is {article} {kind}, not a function")
    # A @task may be exposed under another name (``<app>.tasks.run_slab``); its function
    # must still be defined at module level.
    if target.__qualname__ != (target.__name__ if task is not None else name):
        raise InvalidTaskSpec("func_path", f"{func_path!r} is not a module-level function")
    return target


def signature(func_path: str) -> inspect.Signature:
    """How a task is called: a ``takes_context`` task's context is not the caller's to give."""
    target = import_string(func_path)
    func = target.func if isinstance(target, DjangoTask) else target
    found = _signature_of(func)
    if isinstance(target, DjangoTask) and target.takes_context:
        found = found.replace(parameters=list(found.parameters.values())[1:])
    return found


@functools.lru_cache(maxsize=4096)  # asked at every submission; a function's is fixed
def _signature_of(func: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(func)


def _plain(found: inspect.Signature) -> str:
    """``(a, b=2)``: annotations are strings under ``from __future__ import annotations``."""
    params = [param.replace(annotation=param.empty) for param in found.parameters.values()]
    return str(found.replace(parameters=params, return_annotation=found.empty))


def _check_call(func_path: str, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Refuse arguments the function cannot take, before they are queued (and retried)."""
    expected = signature(func_path)
    try:
        expected.bind(*args, **kwargs)
    except TypeError as exc:
        problem = str(exc)
        by_keyword = "keyword" in problem or "multiple values" in problem or bool(
            kwargs and not args)
        name = func_path.rpartition(".")[2]
        raise CallMismatch(
            "kwargs" if by_keyword else "args",
            f"do not match {name}{_plain(expected)}: {problem}",
        ) from exc


MAX_ATTEMPTS = 1000
MAX_MEMORY_MB = 16 * 1024 * 1024  # 16 TB
MAX_CPUS = 1024
MAX_TIMEOUT = 10 * 365 * 86400.0


def _within(fieldname: str, value: int | None, low: int, high: int) -> None:
    if value is not None and not low <= value <= high:
        raise InvalidTaskSpec(fieldname, f"{value} is outside {low}..{high}")


def _json(fieldname: str, value: object) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidTaskSpec(fieldname, f"must be JSON-serialisable: {exc}") from exc


def validate(spec: TaskSpec) -> tuple[str, str]:
    """Refuse a spec that could never run, naming the field at fault; the JSON texts of
    its arguments otherwise."""
    resolve(spec.func_path)
    validate_options(spec)
    return check_arguments(spec.func_path, spec.args, spec.kwargs)


type Shape = tuple[int, tuple[str, ...]]  # how many arguments, which keywords


def check_arguments(func_path: str, args: object, kwargs: object,
                    fitting: set[Shape] | None = None) -> tuple[str, str]:
    """Refuse arguments that are not JSON or that the function cannot take; their JSON
    texts (as stored) otherwise.

    ``fitting``, for many calls of one function (``enqueue_many``): the shapes of call
    found to fit it so far. Whether a call binds depends on its shape only, and binding
    each of 5,000 calls was a third of their bulk enqueue."""
    if not isinstance(args, list):
        raise InvalidTaskSpec("args", "must be a JSON array")
    if not isinstance(kwargs, dict):
        raise InvalidTaskSpec("kwargs", "must be a JSON object")
    texts = _json("args", args), _json("kwargs", kwargs)
    if fitting is None:
        _check_call(func_path, args, kwargs)
        return texts
    shape = (len(args), tuple(kwargs))
    if shape not in fitting:
        _check_call(func_path, args, kwargs)
        fitting.add(shape)
    return texts


def validate_options(spec: TaskSpec) -> None:
    """Refuse a spec's options (all but the function and its arguments) that could never
    run, naming the field at fault."""
    if not MIN_PRIORITY <= spec.priority <= MAX_PRIORITY:
        raise InvalidTaskSpec(
            "priority", f"{spec.priority} is outside {MIN_PRIORITY}..{MAX_PRIORITY}"
        )
    _within("max_attempts", spec.max_attempts, 1, MAX_ATTEMPTS)
    _within("memory_mb", spec.memory_mb, 1, MAX_MEMORY_MB)
    _within("memory_limit_mb", spec.memory_limit_mb, 1, MAX_MEMORY_MB)
    _within("cpus", spec.cpus, 1, MAX_CPUS)
    if spec.memory_limit_mb is not None and spec.memory_limit_mb < (spec.memory_mb or 0):
        raise InvalidTaskSpec("memory_limit_mb", f"{spec.memory_limit_mb} is below memory_mb "
                                                 f"({spec.memory_mb}): it would stop the task "
                                                 "before it reaches what it declares it needs")
    if spec.timeout is not None and not 0 < spec.timeout <= MAX_TIMEOUT:
        raise InvalidTaskSpec("timeout", f"must be within 0..{MAX_TIMEOUT:g} seconds")
    if spec.retry_backoff is not None and spec.retry_backoff < 0:
        raise InvalidTaskSpec("retry_backoff", "must not be negative")
    if spec.run_after is not None and spec.run_after.tzinfo is None:
        raise InvalidTaskSpec("run_after", "must include a time zone (e.g. 2026-01-01T10:00Z)")
    if len(spec.queue) > 100 or "\x00" in spec.queue:
        raise InvalidTaskSpec("queue", "must be at most 100 printable characters")

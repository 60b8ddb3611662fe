"""A run as submitted: one JSON document, read and checked before anything is written.

    {"name": "nightly", "failure_policy": "halt", "max_parallel": 4, "mode": "parallel",
     "locks": [], "tasks": [{"name": "A", "task": "dotted.path", "args": [], "kwargs": {},
     "depends_on": [], "locks": [], "priority": 0, "timeout": 600}, ...]}

Every refusal names the place in the document (``tasks[2].depends_on``); unknown task
names and cycles are named too, so a caller can fix them without guessing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import spec as task_spec
from ..exceptions import InvalidTaskSpec
from ..models.run import FailurePolicy, HaltRunning, RunMode
from ..models.task import MAX_PRIORITY, MIN_PRIORITY
from ..spec import TaskSpec
from .errors import InvalidRun

RUN_FIELDS = frozenset({
    "name", "failure_policy", "halt_running", "max_parallel", "mode", "locks",
    "wait_for_locks", "start", "queue", "tasks", "merge_outputs",
})
TASK_FIELDS = frozenset({
    "name", "task", "args", "kwargs", "depends_on", "locks", "priority", "timeout", "queue",
    "max_attempts", "memory_mb", "retry_backoff", "cpus", "memory_limit_mb",
})
MAX_TASKS = 100_000
MAX_RUN_NAME = 200
MAX_TASK_NAME = 100
MAX_LOCK_KEY = 255
MAX_LOCKS = 100
MAX_PARALLEL = 1_000_000


@dataclass(frozen=True, slots=True)
class TaskEntry:
    """One task of a run: its name in the run, the call, its predecessors, its lock keys."""

    name: str
    spec: TaskSpec
    depends_on: tuple[str, ...] = ()
    locks: tuple[str, ...] = ()
    index: int = 0  # its place in the document, for messages


@dataclass(frozen=True, slots=True)
class RunSpec:
    """A checked run; ``tasks`` in dependency order (each after all it depends on)."""

    name: str
    tasks: tuple[TaskEntry, ...]
    failure_policy: str = FailurePolicy.HALT
    halt_running: str = HaltRunning.FINISH
    mode: str = RunMode.PARALLEL
    max_parallel: int | None = None
    locks: tuple[str, ...] = ()
    wait_for_locks: bool = False
    start: bool = True
    merge_outputs: bool = False


Check = Callable[[str], None]  # refuses a task path before it is imported (the allow-list)


def _unknown(where: str, data: Mapping[str, Any], allowed: frozenset[str]) -> None:
    extra = sorted(set(data) - allowed)
    if extra:
        prefix = f"{where}." if where else ""
        raise InvalidRun(f"{prefix}{extra[0]}", "is not a known field")


def _text(where: str, value: Any, max_length: int, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise InvalidRun(where, "must be a non-empty string")
    if len(value) > max_length:
        raise InvalidRun(where, f"must be at most {max_length} characters")
    if "\x00" in value:
        raise InvalidRun(where, "must not contain NUL characters")
    return value


def _choice(where: str, value: Any, choices: list[str], default: str) -> str:
    if value is None:
        return default
    if value not in choices:
        raise InvalidRun(where, f"{value!r} is not one of {', '.join(choices)}")
    return str(value)


def _whole(where: str, value: Any, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRun(where, "must be a whole number")
    if not low <= value <= high:
        raise InvalidRun(where, f"must be between {low} and {high}")
    return value


def _number(where: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRun(where, "must be a number")
    return float(value)


def _flag(where: str, value: Any, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRun(where, "must be true or false")
    return value


def _names(where: str, value: Any, max_length: int) -> tuple[str, ...]:
    """A list of strings (predecessors, lock keys), duplicates dropped, order kept."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRun(where, "must be a list of strings")
    if len(value) > MAX_LOCKS and max_length == MAX_LOCK_KEY:
        raise InvalidRun(where, f"must list at most {MAX_LOCKS} keys")
    items = [_text(f"{where}[{i}]", item, max_length) for i, item in enumerate(value)]
    return tuple(dict.fromkeys(items))


def _task_spec(where: str, data: Mapping[str, Any], queue: str) -> TaskSpec:
    args = data.get("args")
    kwargs = data.get("kwargs")
    args = [] if args is None else args  # null: not given, as in the API's other bodies
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(args, list):
        raise InvalidRun(f"{where}.args", "must be a JSON array")
    if not isinstance(kwargs, dict):
        raise InvalidRun(f"{where}.kwargs", "must be a JSON object")
    return TaskSpec(
        func_path=_text(f"{where}.task", data.get("task"), 255),
        args=args,
        kwargs=kwargs,
        queue=_text(f"{where}.queue", data.get("queue"), 100, required=False) or queue,
        priority=_whole(f"{where}.priority", data.get("priority"), MIN_PRIORITY,
                        MAX_PRIORITY) or 0,
        max_attempts=_whole(f"{where}.max_attempts", data.get("max_attempts"), 1,
                            task_spec.MAX_ATTEMPTS),
        timeout=_number(f"{where}.timeout", data.get("timeout")),
        memory_mb=_whole(f"{where}.memory_mb", data.get("memory_mb"), 1,
                         task_spec.MAX_MEMORY_MB),
        retry_backoff=_number(f"{where}.retry_backoff", data.get("retry_backoff")),
        cpus=_whole(f"{where}.cpus", data.get("cpus"), 1, task_spec.MAX_CPUS) or 1,
        memory_limit_mb=_whole(f"{where}.memory_limit_mb", data.get("memory_limit_mb"), 1,
                               task_spec.MAX_MEMORY_MB),
    )


def _entry(index: int, data: Any, queue: str, check: Check | None) -> TaskEntry:
    where = f"tasks[{index}]"
    if not isinstance(data, dict):
        raise InvalidRun(where, "must be a JSON object")
    _unknown(where, data, TASK_FIELDS)
    name = _text(f"{where}.name", data.get("name"), MAX_TASK_NAME)
    where = f"tasks[{index}] ({name})"
    spec = _task_spec(where, data, queue)
    try:
        if check is not None:
            check(spec.func_path)
        task_spec.validate(spec)
    except InvalidTaskSpec as exc:
        field = "task" if exc.field == "func_path" else exc.field
        raise InvalidRun(f"{where}.{field}", exc.message) from exc
    return TaskEntry(
        name=name,
        spec=spec,
        depends_on=_names(f"{where}.depends_on", data.get("depends_on"), MAX_TASK_NAME),
        locks=_names(f"{where}.locks", data.get("locks"), MAX_LOCK_KEY),
        index=index,
    )


def _tasks(value: Any, queue: str, check: Check | None) -> list[TaskEntry]:
    if not isinstance(value, list) or not value:
        raise InvalidRun("tasks", "must be a non-empty list of tasks")
    if len(value) > MAX_TASKS:
        raise InvalidRun("tasks", f"must hold at most {MAX_TASKS} tasks")
    entries = [_entry(index, data, queue, check) for index, data in enumerate(value)]
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        if entry.name in seen:
            raise InvalidRun(f"tasks[{index}].name",
                             f"{entry.name!r} is already the name of tasks[{seen[entry.name]}]")
        seen[entry.name] = index
    for index, entry in enumerate(entries):
        for before in entry.depends_on:
            if before not in seen:
                raise InvalidRun(f"tasks[{index}] ({entry.name}).depends_on",
                                 f"no task named {before!r} in this run")
    return entries


def _cycle(entries: list[TaskEntry], left: set[str]) -> list[str]:
    """One cycle among the tasks Kahn's sort could not place, as names (first repeated)."""
    after = {entry.name: [d for d in entry.depends_on if d in left] for entry in entries
             if entry.name in left}
    node = next(name for name in after if name in left)
    path: list[str] = []
    on_path: dict[str, int] = {}
    while node not in on_path:  # every node left waits on another one left: follow them
        on_path[node] = len(path)
        path.append(node)
        node = after[node][0]
    return [*path[on_path[node]:], node]


def ordered(entries: list[TaskEntry]) -> list[TaskEntry]:
    """The tasks in dependency order, document order among equals; refuse a cycle."""
    by_name = {entry.name: entry for entry in entries}
    pending = {entry.name: len(entry.depends_on) for entry in entries}
    dependents: dict[str, list[str]] = {entry.name: [] for entry in entries}
    for entry in entries:
        for before in entry.depends_on:
            dependents[before].append(entry.name)
    ready = deque(entry.name for entry in entries if not entry.depends_on)
    result: list[TaskEntry] = []
    while ready:
        name = ready.popleft()
        result.append(by_name[name])
        for after in dependents[name]:
            pending[after] -= 1
            if not pending[after]:
                ready.append(after)
    if len(result) < len(entries):
        left = set(by_name) - {entry.name for entry in result}
        cycle = " → ".join(reversed(_cycle(entries, left)))  # "A → B": B depends on A
        raise InvalidRun("tasks", f"the dependencies form a cycle: {cycle}")
    return result


def parse(data: Any, *, check: Check | None = None, name: str | None = None) -> RunSpec:
    """Read a run document; ``check`` refuses task paths (the web's allow-list)."""
    if not isinstance(data, dict):
        raise InvalidRun("body", "must be a JSON object")
    _unknown("", data, RUN_FIELDS)
    run_name = _text("name", name if name is not None else data.get("name"), MAX_RUN_NAME)
    queue = _text("queue", data.get("queue"), 100, required=False)
    tasks = ordered(_tasks(data.get("tasks"), queue, check))
    return RunSpec(
        name=run_name,
        tasks=tuple(tasks),
        failure_policy=_choice("failure_policy", data.get("failure_policy"),
                               FailurePolicy.values, FailurePolicy.HALT),
        halt_running=_choice("halt_running", data.get("halt_running"), HaltRunning.values,
                             HaltRunning.FINISH),
        mode=_choice("mode", data.get("mode"), RunMode.values, RunMode.PARALLEL),
        max_parallel=_whole("max_parallel", data.get("max_parallel"), 1, MAX_PARALLEL),
        locks=_names("locks", data.get("locks"), MAX_LOCK_KEY),
        wait_for_locks=_flag("wait_for_locks", data.get("wait_for_locks"), False),
        start=_flag("start", data.get("start"), True),
        merge_outputs=_flag("merge_outputs", data.get("merge_outputs"), False),
    )

"""The inputs of the task endpoints: a task to submit, and the filters of the task list."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.http import QueryDict

from ..models.task import MAX_PRIORITY, MIN_PRIORITY
from ..spec import MAX_CPUS, TaskSpec
from ..states import TaskState
from .errors import BadRequest
from .parsing import MAX_ID, MAX_INT32, Fields

SUBMIT_FIELDS = (
    "func_path", "args", "kwargs", "priority", "queue", "max_attempts", "timeout",
    "memory_mb", "run_after", "retry_backoff", "depends_on", "cpus", "memory_limit_mb", "force",
)
LIST_PARAMS = (
    "state", "queue", "priority", "worker", "func_path", "func_path_prefix", "after", "before",
    "page_size",
)
MAX_BULK = 10_000  # tasks per bulk request: a sweep's points, within a request's size
MAX_ADD_COUNT = 32  # workers per request, forced or not: a typo must not fork a hundred
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
FUNC_PATH_LENGTH = 255
QUEUE_LENGTH = 100


def task_spec(fields: Fields) -> TaskSpec:
    """A task to enqueue, with the same fields as ``manage.py enqueue`` plus ``depends_on``."""
    func_path = fields.string("func_path", max_length=FUNC_PATH_LENGTH)
    if not func_path:
        raise BadRequest("func_path", "is required")
    args = fields.raw("args") if "args" in fields else []
    kwargs = fields.raw("kwargs") if "kwargs" in fields else {}
    if not isinstance(args, list):
        raise BadRequest("args", "must be a JSON array")
    if not isinstance(kwargs, dict):
        raise BadRequest("kwargs", "must be a JSON object")
    return TaskSpec(
        func_path=func_path,
        args=args,
        kwargs=kwargs,
        queue=fields.string("queue", max_length=QUEUE_LENGTH) or "",
        priority=fields.integer("priority", minimum=MIN_PRIORITY, maximum=MAX_PRIORITY) or 0,
        max_attempts=fields.integer("max_attempts", minimum=1, maximum=MAX_INT32),
        timeout=fields.number("timeout", minimum=0),
        memory_mb=fields.integer("memory_mb", minimum=1, maximum=MAX_INT32),
        run_after=fields.moment("run_after"),
        retry_backoff=fields.number("retry_backoff", minimum=0),
        depends_on=fields.ids("depends_on"),
        cpus=fields.integer("cpus", minimum=1, maximum=MAX_CPUS) or 1,
        memory_limit_mb=fields.integer("memory_limit_mb", minimum=1, maximum=MAX_INT32),
        force=fields.boolean("force"),
    )


def task_specs(fields: Fields) -> list[TaskSpec]:
    """The tasks of a bulk submission (``{"tasks": [...]}``), each as ``task_spec`` reads
    one; a refusal names the task's index (``tasks[7].priority``)."""
    items = fields.raw("tasks")
    if not isinstance(items, list) or not items:
        raise BadRequest("tasks", "must be a non-empty JSON array of tasks")
    if len(items) > MAX_BULK:
        raise BadRequest("tasks", f"holds at most {MAX_BULK} tasks a request, not {len(items)}")
    return [_item_spec(index, item) for index, item in enumerate(items)]


def _item_spec(index: int, item: Any) -> TaskSpec:
    name = f"tasks[{index}]"
    if not isinstance(item, dict):
        raise BadRequest(name, "must be a JSON object")
    try:
        return task_spec(Fields(item, SUBMIT_FIELDS, textual=False))
    except BadRequest as exc:
        raise BadRequest(f"{name}.{exc.field}", exc.reason) from exc


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """Which tasks to list (None: any), and where the page starts (keyset: no OFFSET).

    ``after``: the tasks older than that id (the next page); ``before`` alone: the tasks just
    newer than it (the previous page); both: the tasks between them. Neither: the newest.
    """

    page_size: int = PAGE_SIZE
    states: list[str] = field(default_factory=list)
    queue: str | None = None
    priority: int | None = None
    worker: int | None = None
    func_path: str | None = None
    func_path_prefix: str | None = None
    after: int | None = None
    before: int | None = None


def _states(query: QueryDict) -> list[str]:
    """``?state=QUEUED&state=running`` or ``?state=QUEUED,RUNNING``: any case."""
    names = [name.strip().upper() for raw in query.getlist("state") for name in raw.split(",")]
    for name in names:
        if name not in TaskState.values:
            raise BadRequest("state", f"{name!r} is not one of {', '.join(TaskState.values)}")
    return names


def task_query(query: QueryDict) -> TaskQuery:
    if "page" in query:
        raise BadRequest("page", "pages are gone: follow next, or pass after=<the last id seen>")
    fields = Fields(query, LIST_PARAMS, textual=True)
    size = fields.integer("page_size", minimum=1, maximum=MAX_INT32) or PAGE_SIZE
    return TaskQuery(
        page_size=min(size, MAX_PAGE_SIZE),
        states=_states(query),
        queue=fields.string("queue", max_length=QUEUE_LENGTH),
        priority=fields.integer("priority", minimum=MIN_PRIORITY, maximum=MAX_PRIORITY),
        worker=fields.integer("worker", minimum=1, maximum=MAX_ID),
        func_path=fields.string("func_path", max_length=FUNC_PATH_LENGTH),
        func_path_prefix=fields.string("func_path_prefix", max_length=FUNC_PATH_LENGTH),
        after=fields.integer("after", minimum=1, maximum=MAX_ID),
        before=fields.integer("before", minimum=1, maximum=MAX_ID),
    )

"""The OpenAPI 3.1 document of the JSON API, served at GET /api/schema/.

Written by hand so that it reads as documentation; tests/integration/test_api/ checks it
against the routes (paths, methods, permissions) and validates real responses against it.
"""

from __future__ import annotations

from typing import Any

from .. import spec
from ..models.task import MAX_PRIORITY, MIN_PRIORITY
from ..states import Outcome, TaskState, WorkerState
from ..web import registry
from .forms import (
    FUNC_PATH_LENGTH,
    MAX_ADD_COUNT,
    MAX_BULK,
    MAX_PAGE_SIZE,
    PAGE_SIZE,
    QUEUE_LENGTH,
)
from .parsing import MAX_DEPTH, MAX_ID, MAX_INT32

Schema = dict[str, Any]

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
BOOLEAN: Schema = {"type": "boolean"}
TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
IDS: Schema = {"type": "array", "items": INTEGER}
# Input only: what the server takes. No NUL characters (no database stores them); ids in
# the range of a primary key.
NO_NUL = "^[^\\x00]*$"
TEXT: Schema = {"type": "string", "pattern": NO_NUL}
AN_ID: Schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _maybe(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _or_null(kind: str) -> Schema:
    return {"type": [kind, "null"]}


def _nullable(fields: dict[str, Schema]) -> dict[str, Schema]:
    """Optional JSON body fields: null is taken too, and means "not given"."""
    return {name: {**schema, "type": [schema["type"], "null"]} for name, schema in fields.items()}


def _object(properties: dict[str, Schema], description: str = "",
            required: list[str] | None = None) -> Schema:
    """A closed object; every property is required unless told (responses carry them all)."""
    schema: Schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


def _error(detail: Schema, description: str) -> Schema:
    return _object({"error": STRING, "detail": detail}, description)


RUNNING_TASK = _object({
    "task_id": INTEGER,
    "func_path": STRING,
    "attempt": {**INTEGER, "description": "Attempts since the last operator retry."},
    "max_attempts": INTEGER,
    "started_at": TIME,
    "elapsed": {**NUMBER, "description": "Seconds since this attempt started."},
    "progress": _or_null("number"),
    "progress_message": STRING,
})

WORKER_PROPERTIES: dict[str, Schema] = {
    "worker_id": INTEGER,
    "pid": _or_null("integer"),
    "state": {"type": "string", "enum": WorkerState.values},
    "node": STRING,
    "queues": {"type": "array", "items": STRING},
    "heartbeat": TIME,
    "heartbeat_age": {**_or_null("number"), "description": "Seconds since the last heartbeat."},
    "memory": {**_or_null("integer"), "description": "RSS of the worker process, bytes."},
    "cpu": {**_or_null("number"), "description": "CPU percent of the worker process."},
    "task_memory": {**_or_null("integer"), "description": "RSS of the running task, bytes."},
    "started_at": TIME,
    "stopped_at": TIME,
    "task": _maybe(_ref("RunningTask")),
    "memory_samples": {**IDS, "description": "Recent RSS samples, bytes, oldest first."},
    "warnings": {"type": "array", "items": STRING},
    "failure_reason": STRING,
    "exit_code": _or_null("integer"),
}

STATUS = _object({
    "generated_at": TIME,
    "workers": {"type": "array", "items": _ref("Worker")},
    "limits": _object({
        "admissible": INTEGER,
        "active": INTEGER,
        "can_add": BOOLEAN,
        "reason": STRING,
        "by": _object({"max_count": INTEGER, "cores": INTEGER, "memory": INTEGER}),
    }),
    "memory": _object({
        "total": {**INTEGER, "description": "Bytes."},
        "available": {**INTEGER, "description": "Bytes."},
        "percent": NUMBER,
    }),
    "tasks_memory": _object({
        "budget_mb": {**INTEGER, "description": "This node's budget for running tasks."},
        "committed_mb": {**INTEGER, "description": "Estimates of the tasks running here."},
        "running": INTEGER,
        "measured": {**INTEGER, "description": "Bytes those tasks' processes use now."},
        "next_task_mb": {**INTEGER, "description": "What the next task needs: the largest "
                                                   "queued estimate that could start now."},
        "next_task_id": {**_or_null("integer"), "description": "That task; null: nothing "
                                                              "queued (the default estimate)."},
        "waiting": {**STRING, "description": "Why a queued task waits for memory, or empty."},
    }),
    "queue": {
        "type": "object",
        "description": "Task counts by queue name (paused queues too, even when empty).",
        "additionalProperties": _object({
            "waiting": INTEGER, "queued": INTEGER, "running": INTEGER, "failed_last_hour": INTEGER,
            "paused": {**BOOLEAN, "description": "No worker claims from it until it is resumed."},
        }),
    },
}, "Every active worker and those that ended in the last hour, capacity and queues.")

TASK_SUMMARY_PROPERTIES: dict[str, Schema] = {
    "id": INTEGER,
    "func_path": STRING,
    "state": {"type": "string", "enum": TaskState.values},
    "queue": STRING,
    "priority": INTEGER,
    "attempt": {**INTEGER, "description": "Attempts claimed so far (numbers the attempts)."},
    "attempt_base": {**INTEGER, "description": "Attempts before the last operator retry."},
    "max_attempts": {**INTEGER, "description": "Counted from attempt_base."},
    "worker_id": _or_null("integer"),
    "created_at": TIME,
    "run_after": TIME,
    "started_at": TIME,
    "last_attempted_at": TIME,
    "finished_at": TIME,
    "cancel_requested_at": TIME,
    "quarantined_at": TIME,
    "pending_dependencies": INTEGER,
    "progress": _or_null("number"),
    "progress_message": STRING,
    "error": STRING,
}

ATTEMPT = _object({
    "number": INTEGER,
    "worker_id": _or_null("integer"),
    "worker_label": STRING,
    "started_at": TIME,
    "finished_at": TIME,
    "outcome": {"type": "string", "enum": Outcome.values},
    "error": STRING,
    "exception_class": STRING,
    "traceback": STRING,
    "peak_rss_bytes": _or_null("integer"),
    "log_tail": STRING,
})

TASK_DETAIL = _object({
    **TASK_SUMMARY_PROPERTIES,
    "args": {"type": "array"},
    "kwargs": {"type": "object"},
    "result": {"description": "What the function returned (JSON), null until it succeeds."},
    "timeout": {**NUMBER, "description": "Seconds one attempt may run."},
    "memory_mb": _or_null("integer"),
    "memory_estimate_mb": {**INTEGER, "description": "What its node reserves while it runs."},
    "memory_source": {"type": "string", "enum": ["declared", "learned", "default", ""],
                      "description": "Where the estimate comes from (empty: not estimated)."},
    "cpus": INTEGER,
    "memory_limit_mb": _or_null("integer"),
    "retry_backoff": _or_null("number"),
    "lease_expires_at": TIME,
    "crash_count": INTEGER,
    "peak_rss_bytes": _or_null("integer"),
    "depends_on": IDS,
    "attempts": {"type": "array", "items": _ref("Attempt")},
})

TASK_PAGE = _object({
    "results": {"type": "array", "items": _ref("TaskSummary")},
    "page_size": INTEGER,
    "next": {**_or_null("string"),
             "description": "URL of the next (older) page, `after` the last task shown; "
                            "null when nothing is left."},
    "previous": {**_or_null("string"),
                 "description": "URL of the previous (newer) page, `before` the first task "
                                "shown; null on the first page."},
}, "One page of tasks, newest first, found by keyset (no count, no offset).")

TICK_REPORT = _object({
    "timed_out": {**IDS, "description": "Workers failed for not starting in time."},
    "gone": {**IDS, "description": "Workers whose process vanished."},
    "killed": {**IDS, "description": "Workers killed after an abort grace period."},
    "reclaimed": {**IDS, "description": "Tasks put back (or failed) from lost workers."},
    "pruned_tasks": {**INTEGER, "description": "Finished tasks past WORKER_RESULT_RETENTION."},
    "pruned_workers": INTEGER,
    "pruned_samples": INTEGER,
    "swept_logs": {**INTEGER, "description": "Attempt logs of tasks gone (pruned elsewhere)."},
    "learned": {**INTEGER, "description": "Measured peaks of finished attempts folded into "
                                          "learned memory estimates."},
})

ADD_FIELDS: dict[str, Schema] = {
    "count": {**INTEGER, "minimum": 1, "maximum": MAX_ADD_COUNT, "default": 1},
    "force": {**BOOLEAN, "default": False,
              "description": "Start beyond the memory and core limits, never WORKER_MAX_COUNT."},
}
DRAIN_FIELDS: dict[str, Schema] = {"worker_id": AN_ID}

JSON_VALUE: Schema = {
    "description": f"Any JSON value without NUL characters, nested at most {MAX_DEPTH} deep.",
    "anyOf": [
        TEXT,
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": _ref("JsonValue")},
        {"type": "object", "propertyNames": {"pattern": NO_NUL},
         "additionalProperties": _ref("JsonValue")},
    ],
}


def _submit_body(allowed: list[str]) -> Schema:
    """The call to make; ``allowed`` is the allow-list, the only paths the server takes."""
    return _object({
        "func_path": {**STRING, "enum": allowed,
                      "description": "An allowed task: a @task of an installed app's tasks "
                                     "module, or a path in CRUCIBLE_TASK_ALLOWLIST."},
        **_nullable({
            "args": {"type": "array", "items": _ref("JsonValue"), "default": [],
                     "description": "Positional arguments; with kwargs, a call the task's "
                                    "function takes (its signature), else a 400."},
            "kwargs": {"type": "object", "propertyNames": {"pattern": NO_NUL},
                       "additionalProperties": _ref("JsonValue"), "default": {},
                       "description": "Keyword arguments (see args)."},
            "priority": {**INTEGER, "minimum": MIN_PRIORITY, "maximum": MAX_PRIORITY,
                         "default": 0},
            "queue": {**TEXT, "maxLength": QUEUE_LENGTH,
                      "description": "Default WORKER_QUEUE_NAME."},
            "max_attempts": {**INTEGER, "minimum": 1, "maximum": spec.MAX_ATTEMPTS},
            "timeout": {**NUMBER, "exclusiveMinimum": 0, "maximum": spec.MAX_TIMEOUT,
                        "description": "Seconds per attempt."},
            "memory_mb": {**INTEGER, "minimum": 1, "maximum": spec.MAX_MEMORY_MB},
            "run_after": {**STRING, "format": "date-time",
                          "description": "With a time zone; years 1 to 9999 once in UTC."},
            "retry_backoff": {**NUMBER, "minimum": 0, "description": "Base delay in seconds."},
            "depends_on": {"type": "array", "items": AN_ID,
                           "description": "Tasks that must succeed first."},
            "cpus": {**INTEGER, "minimum": 1, "maximum": spec.MAX_CPUS, "default": 1,
                     "description": "CPUs it takes from its node's budget while it runs."},
            "memory_limit_mb": {**INTEGER, "minimum": 1, "maximum": spec.MAX_MEMORY_MB,
                                "description": "Stopped if its processes grow past this "
                                               "(default WORKER_MEMORY_LIMIT_MB)."},
            "force": {**BOOLEAN, "default": False,
                      "description": "Queue it even if it needs more memory or CPUs than "
                                     "any node's whole budget (else a 400 naming both)."},
        }),
    }, required=["func_path"])


def _submit_many_body(allowed: list[str]) -> Schema:
    """Many calls in one request: each as ``Submit`` takes it, without dependencies."""
    item = _submit_body(allowed)
    item["properties"] = {k: v for k, v in item["properties"].items() if k != "depends_on"}
    return _object({
        "tasks": {"type": "array", "items": item, "minItems": 1, "maxItems": MAX_BULK,
                  "description": "One transaction: one refused task (named `tasks[i].field`) "
                                 "refuses them all. Tasks with dependencies go in a run."},
    })


ERRORS = {
    "Error": _error({"description": "More about the error, or null."}, "Any error."),
    "BadRequest": _error(
        _object({"field": {**STRING, "description": "The body field or query parameter."}}),
        "Bad input; detail.field names what is wrong ('body' for malformed JSON).",
    ),
    "Forbidden": _error(
        {"type": "object", "description": "permission (what was needed) or reason (CSRF)."},
        "Not staff, missing the permission, or a session request without a valid CSRF token.",
    ),
    "Conflict": _error(
        _maybe(_object({"state": STRING})),
        "The object's state does not allow this (e.g. retry of a running task).",
    ),
    "AdmissionRefused": _error(
        _object({
            "reason": {**STRING, "description": "Why, as the panel shows it."},
            "forceable": {**BOOLEAN, "description": "Whether force would start them: false "
                          "when WORKER_MAX_COUNT refuses, which force never passes."},
            "limit": {**STRING, "enum": ["max_count", "cores", "memory"],
                      "description": "The limit that refused: memory, cores, or the hard cap "
                      "(max_count)."},
            "admissible": INTEGER,
            "active": INTEGER,
            "requested": INTEGER,
            "limits": _object({"max_count": INTEGER, "cores": INTEGER, "memory": INTEGER}),
        }),
        "Starting more workers would exceed capacity; force starts them anyway beyond the "
        "memory and core limits, never beyond WORKER_MAX_COUNT.",
    ),
}


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


RESPONSES = {
    "BadRequest": _json(_ref("BadRequest"), "Bad input."),
    "Unauthorized": {
        **_json(_ref("Error"), "No session and no bearer token, or a bad/revoked token."),
        "headers": {"WWW-Authenticate": {"schema": STRING, "description": "Bearer challenge."}},
    },
    "Forbidden": _json(_ref("Forbidden"), "Not allowed."),
    "NotFound": _json(_ref("Error"), "No such object."),
    "Conflict": _json(_ref("Conflict"), "Not allowed in the object's current state."),
}


def _use(name: str) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


ERROR_RESPONSES = {"400": "BadRequest", "401": "Unauthorized", "403": "Forbidden",
                   "404": "NotFound", "409": "Conflict"}


def _operation(summary: str, permission: str | None, ok: tuple[str, Schema, str],
               errors: tuple[str, ...], conflict: Schema | None = None, **extra: Any) -> Schema:
    """One operation: its success response, its error responses, who may call it."""
    status, schema, description = ok
    responses: dict[str, Schema] = {status: _json(schema, description)}
    for code in errors:
        responses[code] = _use(ERROR_RESPONSES[code])
    if conflict is not None:
        responses["409"] = conflict
    op: Schema = {"summary": summary, "responses": responses, **extra}
    op["x-permission"] = permission
    if permission is None:
        op["security"] = [{}, {"bearer": []}, {"session": []}]
    return op


def _id(name: str, what: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": what,
            "schema": {"type": "integer", "minimum": 1}}


def _query(name: str, schema: Schema, description: str, **extra: Any) -> Schema:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema, **extra}


def _body(schema: Schema, description: str) -> Schema:
    return {"required": False, "description": description,
            "content": {"application/json": {"schema": schema}}}


def _json_or_form(fields: dict[str, Schema], description: str) -> Schema:
    """Optional fields as JSON (null meaning "not given") or as form fields, as HTMX sends."""
    return {"required": False, "description": description, "content": {
        "application/json": {"schema": _object(_nullable(fields), required=[])},
        "application/x-www-form-urlencoded": {"schema": _object(fields, required=[])},
    }}


NO_BODY = _body(_object({}), "None needed; an empty JSON object is accepted.")

QUEUE_NAME: Schema = {**TEXT, "minLength": 1, "maxLength": 100, "description": "The queue's name."}
QUEUE_BODY: Schema = {"required": True, "description": "The queue.", "content": {
    "application/json": {"schema": _object({"queue": QUEUE_NAME})},
    "application/x-www-form-urlencoded": {"schema": _object({"queue": QUEUE_NAME})},
}}
QUEUE_STATE = _object({
    "name": STRING,
    "paused": {**BOOLEAN, "description": "No worker claims its tasks until it is resumed."},
    "paused_at": TIME,
    "paused_by": _or_null("string"),
    "queued": {**INTEGER, "description": "Tasks a worker may take now (10001: more)."},
    "scheduled": {**INTEGER, "description": "Queued, but not before their run_after."},
    "running": INTEGER,
}, "A queue: whether it is paused, and its counts (each stops at 10001).")

TASK_FILTERS = [
    _query("state", {"type": "array", "items": {"type": "string", "enum": TaskState.values}},
           "Repeat or comma-separate; any case.", explode=True),
    _query("queue", {**TEXT, "maxLength": QUEUE_LENGTH}, "Exact queue name."),
    _query("priority", {**INTEGER, "minimum": MIN_PRIORITY, "maximum": MAX_PRIORITY},
           "Exact priority."),
    _query("worker", AN_ID, "Id of the worker that ran it last."),
    _query("func_path", {**TEXT, "maxLength": FUNC_PATH_LENGTH}, "Exact dotted path."),
    _query("func_path_prefix", {**TEXT, "maxLength": FUNC_PATH_LENGTH},
           "Dotted paths starting with this."),
    _query("after", AN_ID, "The tasks older than this id: the next page (as `next` links)."),
    _query("before", AN_ID,
           "Alone: the tasks just newer than this id, the previous page (as `previous` "
           "links). With `after`: the floor of a window, the tasks between the two."),
    _query("page_size", {**INTEGER, "minimum": 1, "maximum": MAX_INT32, "default": PAGE_SIZE},
           f"Larger values are capped at {MAX_PAGE_SIZE}."),
]

WORKER = _ref("Worker")
TASK = _ref("TaskDetail")

PATHS: dict[str, Schema] = {
    "/api/workers/status/": {"get": _operation(
        "Workers, capacity, machine memory and queue counts", "workers.view_worker",
        ("200", _ref("Status"), "The pool now."), ("401", "403"))},
    "/api/workers/add/": {"post": _operation(
        "Start workers on this machine", "workers.manage_workers",
        ("201", _ref("WorkerAdded"), "The first new worker; `workers` lists all of them."),
        ("400", "401", "403"),
        conflict=_json(_ref("AdmissionRefused"), "Beyond capacity and not forced."),
        parameters=[_query("force", BOOLEAN,
                           "As force in the body (how the panel sends it).")],
        requestBody=_json_or_form(ADD_FIELDS, "Optional."),
    )},
    "/api/workers/drain/": {"post": _operation(
        "Let a worker finish its task and stop", "workers.manage_workers",
        ("200", WORKER, "The draining worker."), ("400", "401", "403", "404", "409"),
        requestBody=_json_or_form(
            DRAIN_FIELDS, "Optional; without worker_id an idle running worker is preferred."),
    )},
    "/api/workers/{worker_id}/undrain/": {"post": _operation(
        "Cancel an operator's drain: the worker serves its queues again",
        "workers.manage_workers",
        ("200", WORKER, "The worker, RUNNING again."), ("400", "401", "403", "404", "409"),
        parameters=[_id("worker_id", "The worker.")], requestBody=NO_BODY,
    )},
    "/api/workers/{worker_id}/abort/": {"post": _operation(
        "Stop a worker now; its task is requeued", "workers.manage_workers",
        ("200", WORKER, "The worker, abort requested."), ("400", "401", "403", "404", "409"),
        parameters=[_id("worker_id", "The worker.")], requestBody=NO_BODY,
    )},
    "/workers/tick/": {"post": _operation(
        "Run the monitor tick once", "workers.manage_workers",
        ("200", _ref("TickReport"), "What the tick did."), ("400", "401", "403"),
        requestBody=NO_BODY,
    )},
    "/api/tasks/": {
        "get": _operation(
            "Tasks, newest first", "workers.view_task",
            ("200", _ref("TaskPage"), "One page of tasks."), ("400", "401", "403"),
            parameters=TASK_FILTERS,
        ),
        "post": _operation(
            "Enqueue an allowed task", "workers.submit_task",
            ("201", TASK, "The new task."), ("400", "401", "403"),
            requestBody={**_body(_ref("Submit"), "The call to make."), "required": True},
        ),
    },
    "/api/tasks/bulk/": {"post": _operation(
        "Enqueue many allowed tasks at once, all or none", "workers.submit_task",
        ("201", _object({
            "count": {**INTEGER, "description": "How many tasks were queued."},
            "ids": {"type": "array", "items": AN_ID, "description": "Their ids, in order."},
        }), "The tasks queued, in the order given."), ("400", "401", "403"),
        requestBody={**_body(_ref("SubmitMany"), "The calls to make."), "required": True},
    )},
    "/api/tasks/{task_id}/": {"get": _operation(
        "A task with every attempt", "workers.view_task",
        ("200", TASK, "The task."), ("401", "403", "404"),
        parameters=[_id("task_id", "The task.")],
    )},
    "/api/tasks/{task_id}/cancel/": {"post": _operation(
        "Cancel a waiting, queued or running task", "workers.cancel_task",
        ("200", TASK, "Cancelled, or (running) cancel_requested_at set until its worker stops."),
        ("400", "401", "403", "404", "409"),
        parameters=[_id("task_id", "The task.")], requestBody=NO_BODY,
    )},
    "/api/tasks/{task_id}/retry/": {"post": _operation(
        "Retry a finished task with a fresh budget of attempts", "workers.retry_task",
        ("200", TASK, "Queued (or waiting for its dependencies) again."),
        ("400", "401", "403", "404", "409"),
        parameters=[_id("task_id", "The task.")], requestBody=NO_BODY,
    )},
    "/api/queues/": {"get": _operation(
        "Queues with tasks to finish, and paused ones", "workers.view_task",
        ("200", _object({"queues": {"type": "array", "items": _ref("QueueState")}}),
         "Every such queue, by name."), ("400", "401", "403"),
    )},
    "/api/queues/pause/": {"post": _operation(
        "Pause a queue: its tasks stay queued, running ones finish", "workers.manage_workers",
        ("200", _ref("QueueState"), "The queue, paused."), ("400", "401", "403"),
        requestBody=QUEUE_BODY,
    )},
    "/api/queues/resume/": {"post": _operation(
        "Resume a paused queue: workers claim its tasks again", "workers.manage_workers",
        ("200", _ref("QueueState"), "The queue, open."), ("400", "401", "403"),
        requestBody=QUEUE_BODY,
    )},
    "/api/schema/": {"get": _operation(
        "This document", None,
        ("200", {"type": "object"}, "OpenAPI 3.1."), ("401",),
    )},
}


def document() -> Schema:
    """The document as of now: the submit body names the tasks the allow-list takes."""
    from . import run_schema  # built from this module's pieces
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Crucible control API",
            "version": "1",
            "description": (
                "Steer Crucible's worker pool and tasks. Scripts authenticate with "
                "`Authorization: Bearer <token>` (made by `manage.py createapitoken`); "
                "browsers with the admin session and the `X-CSRFToken` header on POST. Only "
                "active staff users are let in, with the permission named by each "
                "operation's `x-permission`. Every error is JSON `{\"error\", \"detail\"}`; "
                "a method a path does not serve is a 405 with an `Allow` header."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": {**PATHS, **run_schema.PATHS},
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "A token from `manage.py createapitoken USERNAME`."},
                "session": {"type": "apiKey", "in": "cookie", "name": "sessionid",
                            "description": "The admin session; POSTs need X-CSRFToken."},
            },
            "schemas": {
                "Worker": _object(WORKER_PROPERTIES),
                "WorkerAdded": _object({
                    **WORKER_PROPERTIES,
                    "workers": {"type": "array", "items": WORKER},
                }),
                "RunningTask": RUNNING_TASK,
                "Status": STATUS,
                "TaskSummary": _object(TASK_SUMMARY_PROPERTIES),
                "TaskDetail": TASK_DETAIL,
                "Attempt": ATTEMPT,
                "TaskPage": TASK_PAGE,
                "Submit": _submit_body(sorted(registry.allowed())),
                "SubmitMany": _submit_many_body(sorted(registry.allowed())),
                "JsonValue": JSON_VALUE,
                "TickReport": TICK_REPORT,
                "QueueState": QUEUE_STATE,
                **run_schema.schemas(sorted(registry.allowed())),
                **ERRORS,
            },
            "responses": RESPONSES,
        },
    }

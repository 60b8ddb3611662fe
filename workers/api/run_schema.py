"""The runs endpoints in the OpenAPI document (merged into it by ``schema.document``)."""

from __future__ import annotations

from .. import spec
from ..models.run import FailurePolicy, HaltRunning, RunMode, RunState
from ..models.task import MAX_PRIORITY, MIN_PRIORITY
from ..runs import document as run_document
from ..states import TaskState
from .runs import MAX_LIMIT
from .schema import (
    BOOLEAN,
    INTEGER,
    NO_BODY,
    NO_NUL,
    NUMBER,
    STRING,
    TEXT,
    TIME,
    Schema,
    _id,
    _json,
    _nullable,
    _object,
    _operation,
    _or_null,
    _query,
    _ref,
)

NAMES: Schema = {"type": "array", "items": {**TEXT, "minLength": 1,
                                            "maxLength": run_document.MAX_TASK_NAME}}
LOCK_KEYS: Schema = {"type": "array",
                     "items": {**TEXT, "minLength": 1, "maxLength": run_document.MAX_LOCK_KEY},
                     "description": f"At most {run_document.MAX_LOCKS} lock keys (paths, "
                                    "resource names): tasks whose keys overlap never run at "
                                    "the same time."}

RUN_PROPERTIES: dict[str, Schema] = {
    "id": INTEGER,
    "name": STRING,
    "state": {"type": "string", "enum": RunState.values},
    "failure_policy": {"type": "string", "enum": FailurePolicy.values},
    "halt_running": {"type": "string", "enum": HaltRunning.values},
    "mode": {"type": "string", "enum": RunMode.values},
    "max_parallel": _or_null("integer"),
    "locks": {"type": "array", "items": STRING},
    "wait_for_locks": BOOLEAN,
    "merge_outputs": BOOLEAN,
    "reason": {**STRING, "description": "Why it failed or was cancelled."},
    "created_by": STRING,
    "created_at": TIME,
    "started_at": TIME,
    "finished_at": {**TIME, "description": "When its last task ended; null until then."},
    "counts": {"type": "object", "additionalProperties": INTEGER,
               "description": "Its tasks by state."},
}

RUN_TASK = _object({
    "id": INTEGER,
    "name": STRING,
    "state": {"type": "string", "enum": TaskState.values},
    "skipped": {**BOOLEAN, "description": "Cancelled without running: an upstream task did "
                                          "not succeed, or the run halted (see error)."},
    "depends_on": {"type": "array", "items": STRING, "description": "Names in the run."},
    "worker_id": _or_null("integer"),
    "node": STRING,
    "attempt": INTEGER,
    "error": STRING,
    "started_at": TIME,
    "finished_at": TIME,
    "waiting_for": {**STRING, "description": "While WAITING for lock keys: the key and the "
                                             "task (or run) holding it; else empty."},
})


def _task_entry(allowed: list[str]) -> Schema:
    return _object({
        "name": {**TEXT, "minLength": 1, "maxLength": run_document.MAX_TASK_NAME},
        "task": {**STRING, "enum": allowed, "description": "An allowed task, as func_path "
                                                           "of POST /api/tasks/."},
        **_nullable({
            "args": {"type": "array", "items": _ref("JsonValue"), "default": []},
            "kwargs": {"type": "object", "propertyNames": {"pattern": NO_NUL},
                       "additionalProperties": _ref("JsonValue"), "default": {}},
            "depends_on": {**NAMES, "description": "Names of tasks of this run."},
            "locks": LOCK_KEYS,
            "priority": {**INTEGER, "minimum": MIN_PRIORITY, "maximum": MAX_PRIORITY},
            "timeout": {**NUMBER, "exclusiveMinimum": 0, "maximum": spec.MAX_TIMEOUT},
            "queue": {**TEXT, "maxLength": 100},
            "max_attempts": {**INTEGER, "minimum": 1, "maximum": spec.MAX_ATTEMPTS},
            "memory_mb": {**INTEGER, "minimum": 1, "maximum": spec.MAX_MEMORY_MB},
            "retry_backoff": {**NUMBER, "minimum": 0},
            "cpus": {**INTEGER, "minimum": 1, "maximum": spec.MAX_CPUS, "default": 1},
            "memory_limit_mb": {**INTEGER, "minimum": 1, "maximum": spec.MAX_MEMORY_MB},
        }),
    }, required=["name", "task"])


def submit_body(allowed: list[str]) -> Schema:
    return _object({
        "name": {**TEXT, "minLength": 1, "maxLength": run_document.MAX_RUN_NAME},
        "tasks": {"type": "array", "items": _task_entry(allowed),
                  "description": f"1 to {run_document.MAX_TASKS} tasks, names unique in the "
                                 "run; no cycles (refused, named)."},
        **_nullable({
            "failure_policy": {**STRING, "enum": FailurePolicy.values, "default": "halt"},
            "halt_running": {**STRING, "enum": HaltRunning.values, "default": "finish",
                             "description": "What a halt does to the run's running tasks."},
            "mode": {**STRING, "enum": RunMode.values, "default": "parallel"},
            "max_parallel": {**INTEGER, "minimum": 1, "maximum": run_document.MAX_PARALLEL},
            "locks": LOCK_KEYS,
            "wait_for_locks": {**BOOLEAN, "default": False},
            "merge_outputs": {**BOOLEAN, "default": False,
                              "description": "Copy the tasks' work directories into the "
                                             "run's output/ when it completes."},
            "start": {**BOOLEAN, "default": True,
                      "description": "false: CREATED until resumed."},
            "queue": {**TEXT, "maxLength": 100, "description": "Default for its tasks."},
        }),
    }, required=["name", "tasks"])


RUN_ID = [_id("run_id", "The run.")]


def _verb(summary: str, permission: str, ok: str) -> Schema:
    return {"post": _operation(summary, permission, ("200", _ref("RunDetail"), ok),
                               ("400", "401", "403", "404", "409"),
                               parameters=RUN_ID, requestBody=NO_BODY)}


PATHS: dict[str, Schema] = {
    "/api/runs/": {
        "get": _operation(
            "Runs, newest first", "workers.view_task",
            ("200", _object({"runs": {"type": "array", "items": _ref("Run")}}), "Runs."),
            ("400", "401", "403"),
            parameters=[
                _query("state", {**STRING, "enum": RunState.values + [s.lower() for s in
                                                                       RunState.values]},
                       "Only runs in this state."),
                _query("limit", {**INTEGER, "minimum": 1, "maximum": MAX_LIMIT,
                                 "default": 50}, "How many."),
            ],
        ),
        "post": _operation(
            "Submit a run of dependent tasks (one JSON document)", "workers.submit_task",
            ("201", _ref("RunDetail"), "The run, started unless start is false."),
            ("400", "401", "403"),
            conflict=_json(_ref("LockHeld"), "A lock key of the run is held by another "
                                             "active run (and wait_for_locks is false)."),
            requestBody={"required": True, "description": "The run.", "content": {
                "application/json": {"schema": _ref("RunSubmit")}}},
        ),
    },
    "/api/runs/{run_id}/": {"get": _operation(
        "A run: its state and each task's name, id, state and dependencies",
        "workers.view_task", ("200", _ref("RunDetail"), "The run."), ("401", "403", "404"),
        parameters=RUN_ID,
    )},
    "/api/runs/{run_id}/pause/": _verb(
        "Pause a run: no new claims of its tasks, running ones finish",
        "workers.manage_workers", "The run, PAUSED (pausing twice changes nothing)."),
    "/api/runs/{run_id}/resume/": _verb(
        "Resume a paused (or start a created) run", "workers.manage_workers",
        "The run, RUNNING."),
    "/api/runs/{run_id}/cancel/": _verb(
        "Cancel a run: its waiting and queued tasks now, running ones asked to stop",
        "workers.cancel_task", "The run, CANCELLED."),
}


def schemas(allowed: list[str]) -> dict[str, Schema]:
    return {
        "Run": _object(RUN_PROPERTIES),
        "RunDetail": _object({
            **RUN_PROPERTIES,
            "waiting_for": {**STRING, "description": "A CREATED run waiting for its own lock "
                                                     "keys: the key and who holds it."},
            "tasks": {"type": "array", "items": _ref("RunTask")}}),
        "RunTask": RUN_TASK,
        "LockHeld": _object({"error": STRING, "detail": _object({
            "holders": {"type": "object", "additionalProperties": INTEGER,
                        "description": "Each refused key and the id of the run holding it."},
        })}, "The run was not written."),
        "RunSubmit": submit_body(allowed),
    }

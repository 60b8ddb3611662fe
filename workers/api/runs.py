"""The runs endpoints: submit a run document, read a run, pause, resume or cancel it."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpRequest, JsonResponse

from .. import runs
from ..models import Run
from ..models.run import RunState
from ..runs.reading import RunReport, TaskLine
from ..web import audit
from ..web.status import iso
from .errors import BadRequest
from .parsing import Fields, body, object_id
from .routing import operation

logger = logging.getLogger(__name__)

LIST_PARAMS = ("state", "limit")
MAX_LIMIT = 200


def _run(run: Run, counts: dict[str, int]) -> dict[str, Any]:
    return {
        "id": run.pk,
        "name": run.name,
        "state": run.state,
        "failure_policy": run.failure_policy,
        "halt_running": run.halt_running,
        "mode": run.mode,
        "max_parallel": run.max_parallel,
        "locks": run.locks,
        "wait_for_locks": run.wait_for_locks,
        "merge_outputs": run.merge_outputs,
        "reason": run.reason,
        "created_by": run.created_by,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "counts": counts,
    }


def _task(line: TaskLine) -> dict[str, Any]:
    return {
        "id": line.id,
        "name": line.name,
        "state": line.state,
        "skipped": line.skipped,
        "depends_on": line.depends_on,
        "worker_id": line.worker_id,
        "node": line.node,
        "attempt": line.attempt,
        "error": line.error,
        "started_at": iso(line.started_at),
        "finished_at": iso(line.finished_at),
        "waiting_for": line.waiting_for,
    }


def detail(found: RunReport) -> dict[str, Any]:
    return {**_run(found.run, found.counts), "waiting_for": found.waiting_for,
            "tasks": [_task(line) for line in found.tasks]}


def _log(user: User | AnonymousUser, action: str, run: Run) -> None:
    audit.record(user, run, action)
    logger.info("%s run %s by %s", action, run.pk, user,
                extra={"action": action, "run": run.pk, "user": user.pk})


@operation("GET", "workers.view_task")
def run_list(request: HttpRequest) -> JsonResponse:
    fields = Fields(request.GET, LIST_PARAMS, textual=True)
    state = fields.string("state", max_length=16)
    named = RunState.values + [value.lower() for value in RunState.values]
    if state is not None and state not in named:
        raise BadRequest("state", f"{state!r} is not one of {', '.join(RunState.values)} "
                                  "(or the same in lower case)")
    limit = fields.integer("limit", minimum=1, maximum=MAX_LIMIT) or 50
    rows = runs.listing([state.upper()] if state else None, limit)
    return JsonResponse({"runs": [_run(run, counts) for run, counts in rows]})


@operation("POST", "workers.submit_task")
def run_submit(request: HttpRequest) -> JsonResponse:
    data, textual = body(request)
    if textual:
        raise BadRequest("body", "a run is one JSON document (Content-Type: application/json)")
    run = runs.submit(data, by=str(request.user), trusted=False)
    _log(request.user, "submit", run)
    return JsonResponse(detail(runs.report(run.pk)), status=201)


@operation("GET", "workers.view_task")
def run_detail(request: HttpRequest, run_id: int) -> JsonResponse:
    return JsonResponse(detail(runs.report(object_id(run_id, "run"))))


def _act(request: HttpRequest, run_id: int, action: str) -> JsonResponse:
    Fields(body(request)[0], (), textual=False)
    run_id = object_id(run_id, "run")
    if action == "cancel":
        run = runs.cancel(run_id, by=str(request.user))
    else:
        run = runs.pause(run_id) if action == "pause" else runs.resume(run_id)
    _log(request.user, action, run)
    return JsonResponse(detail(runs.report(run.pk)))


@operation("POST", "workers.manage_workers")
def run_pause(request: HttpRequest, run_id: int) -> JsonResponse:
    return _act(request, run_id, "pause")


@operation("POST", "workers.manage_workers")
def run_resume(request: HttpRequest, run_id: int) -> JsonResponse:
    return _act(request, run_id, "resume")


@operation("POST", "workers.cancel_task")
def run_cancel(request: HttpRequest, run_id: int) -> JsonResponse:
    return _act(request, run_id, "cancel")

"""The JSON API's handlers: parse, call a service, render. Routing checks method and caller."""

from __future__ import annotations

from collections.abc import Collection

from django.http import HttpRequest, JsonResponse

from ..pool import monitor
from ..queue import pausing
from ..web import status
from . import actions, forms, queries, render, schema
from .parsing import MAX_ID, Fields, body, object_id
from .routing import operation

VIEW_WORKERS = "workers.view_worker"
MANAGE_WORKERS = "workers.manage_workers"
VIEW_TASKS = "workers.view_task"


def _fields(request: HttpRequest, allowed: Collection[str]) -> Fields:
    data, textual = body(request)
    return Fields(data, allowed, textual=textual)


def _no_fields(request: HttpRequest) -> None:
    """Refuse a body with fields: this operation takes none (a typo must not pass)."""
    _fields(request, ())


def _force(request: HttpRequest, fields: Fields) -> bool:
    """``{"force": true}`` in the body, or ``?force=true`` as the panel sends it."""
    query = Fields(request.GET, ("force",), textual=True)
    return fields.boolean("force") or query.boolean("force")


@operation("GET", VIEW_WORKERS)
def worker_status(request: HttpRequest) -> JsonResponse:
    return JsonResponse(status.to_json(status.snapshot()))


@operation("POST", MANAGE_WORKERS)
def worker_add(request: HttpRequest) -> JsonResponse:
    fields = _fields(request, ("count", "force"))
    count = fields.integer("count", minimum=1, maximum=forms.MAX_ADD_COUNT) or 1
    added = actions.add_workers(request.user, count, force=_force(request, fields))
    return JsonResponse(render.added(added), status=201)


@operation("POST", MANAGE_WORKERS)
def worker_drain(request: HttpRequest) -> JsonResponse:
    worker_id = _fields(request, ("worker_id",)).integer("worker_id", minimum=1, maximum=MAX_ID)
    return JsonResponse(render.worker(actions.drain_worker(request.user, worker_id)))


@operation("POST", MANAGE_WORKERS)
def worker_undrain(request: HttpRequest, worker_id: int) -> JsonResponse:
    _no_fields(request)
    worker = actions.undrain_worker(request.user, object_id(worker_id, "worker"))
    return JsonResponse(render.worker(worker))


@operation("POST", MANAGE_WORKERS)
def worker_abort(request: HttpRequest, worker_id: int) -> JsonResponse:
    _no_fields(request)
    worker = actions.abort_worker(request.user, object_id(worker_id, "worker"))
    return JsonResponse(render.worker(worker))


@operation("POST", MANAGE_WORKERS)
def tick(request: HttpRequest) -> JsonResponse:
    _no_fields(request)
    return JsonResponse(render.tick(monitor.tick()))


@operation("GET", VIEW_TASKS)
def task_list(request: HttpRequest) -> JsonResponse:
    page = queries.task_page(forms.task_query(request.GET))
    return JsonResponse(render.task_page(request, page))


@operation("POST", "workers.submit_task")
def task_submit(request: HttpRequest) -> JsonResponse:
    spec = forms.task_spec(_fields(request, forms.SUBMIT_FIELDS))
    task = actions.submit_task(spec)
    return JsonResponse(render.task_detail(queries.task_history(task.pk)), status=201)


@operation("POST", "workers.submit_task")
def task_submit_many(request: HttpRequest) -> JsonResponse:
    specs = forms.task_specs(_fields(request, ("tasks",)))
    tasks = actions.submit_tasks(specs)
    return JsonResponse({"count": len(tasks), "ids": [task.pk for task in tasks]}, status=201)


@operation("GET", VIEW_TASKS)
def task_detail(request: HttpRequest, task_id: int) -> JsonResponse:
    history = queries.task_history(object_id(task_id, "task"))
    return JsonResponse(render.task_detail(history))


@operation("POST", "workers.cancel_task")
def task_cancel(request: HttpRequest, task_id: int) -> JsonResponse:
    _no_fields(request)
    task = actions.cancel_task(request.user, object_id(task_id, "task"))
    return JsonResponse(render.task_detail(queries.task_history(task.pk)))


@operation("POST", "workers.retry_task")
def task_retry(request: HttpRequest, task_id: int) -> JsonResponse:
    _no_fields(request)
    task = actions.retry_task(request.user, object_id(task_id, "task"))
    return JsonResponse(render.task_detail(queries.task_history(task.pk)))


@operation("GET", VIEW_TASKS)
def queue_list(request: HttpRequest) -> JsonResponse:
    Fields(request.GET, (), textual=True)
    return JsonResponse({"queues": [render.queue_state(row) for row in pausing.overview()]})


def _set_paused(request: HttpRequest, paused: bool) -> JsonResponse:
    name = _fields(request, ("queue",)).string("queue", max_length=pausing.MAX_NAME)
    return JsonResponse(render.queue_state(actions.set_paused(request.user, name, paused)))


@operation("POST", MANAGE_WORKERS)
def queue_pause(request: HttpRequest) -> JsonResponse:
    return _set_paused(request, True)


@operation("POST", MANAGE_WORKERS)
def queue_resume(request: HttpRequest) -> JsonResponse:
    return _set_paused(request, False)


@operation("GET", None)
def openapi(request: HttpRequest) -> JsonResponse:
    return JsonResponse(schema.document())

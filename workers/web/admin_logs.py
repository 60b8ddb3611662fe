"""The log section of the task and worker pages: follow a log as it is written, download it.

Mixed into TaskAdmin and WorkerAdmin. The page shows the last lines; while the log is still
written, an htmx poll asks for what came after a byte offset and appends it, until the
attempt (or the worker) ends. Polls answer 403 rather than a login page (an expired
session must not be swapped into the page); downloads and pages go through the admin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, override

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from ..models import Task, Worker
from . import logs
from .logs import Chunk, LogNotFound, LogView

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

    class _Admin[M: Model](ModelAdmin[M]): ...
else:
    class _Admin[M: Model]:  # the admin class itself follows in the model admin's bases
        pass

TEMPLATE = "admin/workers/log.html"
UPDATE = f"{TEMPLATE}#log-update"
MISSING = "admin/workers/log_missing.html"
POLL_SECONDS = 1
CONTENT_TYPE = "text/plain; charset=utf-8"


def _whole(value: str | None, name: str) -> int | None:
    """A query parameter as a whole number >= 0; None when absent; ValueError naming it."""
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()):
        raise ValueError(f"{name} must be a whole number, not {value!r}")
    return int(value)


def _download(paths: list[Any], filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(logs.stream(paths), content_type=CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    add_never_cache_headers(response)
    return response


def attempt_links(task_id: int, number: int) -> str:
    """Links of an attempt's row: its log on the page, and its download when here."""
    view = format_html('<a href="?attempt={}#cr-log">view</a>', number)
    if not logs.attempt_path(task_id, number).is_file():
        return view
    url = reverse("admin:workers_task_log_download", args=[task_id, number])
    return format_html('{} · <a href="{}" download>download</a>', view, url)


class LogSection[M: Model](_Admin[M]):
    """What the task and worker log sections share: routes, permission, rendering."""

    log_kind = ""  # "task" or "worker"
    change_form_template = "admin/workers/log_change_form.html"

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        mine = [
            # <int:...>: a path would take a queue's page (queues/<name>/) whose name ends
            # in /log for a log of "queues/<name>"
            path("<int:object_id>/log/", self.log_update_view, name=f"{info}_log"),
            *self.log_download_urls(info),
        ]
        return [*mine, *super().get_urls()]

    def log_download_urls(self, info: str) -> list[URLPattern]:
        raise NotImplementedError

    def log_context(self, obj: Any, view: LogView) -> dict[str, Any]:
        info = f"admin:{self.opts.app_label}_{self.opts.model_name}"
        query = f"offset={view.chunk.offset}"
        if view.attempt is not None:
            query = f"attempt={view.attempt}&{query}"
        return {
            "log": view,
            "log_kind": self.log_kind,
            "poll_url": f"{reverse(f'{info}_log', args=[obj.pk])}?{query}",
            "download_url": self.log_download_url(obj, view),
            "poll_seconds": POLL_SECONDS,
            "ended_text": self.log_ended_text(obj),
        }

    def log_download_url(self, obj: Any, view: LogView) -> str:
        raise NotImplementedError

    def log_ended_text(self, obj: Any) -> str:
        raise NotImplementedError

    def log_chunk(self, obj: Any, request: HttpRequest) -> tuple[Chunk, LogView]:
        raise NotImplementedError

    @override
    def render_change_form(

        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        if obj is not None:
            view = self.log_page_view(obj, request)
            if view is not None:
                context.update(self.log_context(obj, view), crucible_log=True)
        return super().render_change_form(request, context, add, change, form_url, obj)

    def log_page_view(self, obj: Any, request: HttpRequest) -> LogView | None:
        raise NotImplementedError

    def _log_object(self, request: HttpRequest, object_id: int) -> M:
        """The row, if the user may view it: 403 otherwise, 404 if there is no such row."""
        user = request.user
        if not (user.is_active and user.is_staff):
            raise PermissionDenied
        obj: M | None = self.get_object(request, str(object_id))
        if obj is None:
            raise LogNotFound(f"There is no {self.opts.verbose_name} {object_id}.")
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        return obj

    def log_update_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """GET <object>/log/?offset=N: what the log gained since N, for the page's poll."""
        return _poll(self, request, object_id)

    def log_missing(self, request: HttpRequest, message: str) -> TemplateResponse:
        context = {**self.admin_site.each_context(request), "title": "Log not found",
                   "message": message, "opts": self.opts}
        return TemplateResponse(request, MISSING, context, status=404)


def _poll(section: LogSection[Any], request: HttpRequest, object_id: int) -> HttpResponse:
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    htmx = bool(getattr(request, "htmx", False))
    if not request.user.is_authenticated and not htmx:
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    try:
        obj = section._log_object(request, object_id)
        chunk, view = section.log_chunk(obj, request)
    except ValueError as exc:
        return HttpResponseBadRequest(str(exc), content_type=CONTENT_TYPE)
    except LogNotFound as exc:
        return HttpResponse(str(exc), status=404, content_type=CONTENT_TYPE)
    context = {**section.log_context(obj, view), "chunk": chunk}
    response = TemplateResponse(request, UPDATE, context)
    add_never_cache_headers(response)
    return response


class TaskLogs(LogSection[Task]):
    log_kind = "task"

    def log_download_urls(self, info: str) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.log_download_view)
        return [path("<int:object_id>/log/<int:attempt>/download/", view,
                     name=f"{info}_log_download")]

    def log_page_view(self, obj: Task, request: HttpRequest) -> LogView | None:
        try:
            return logs.attempt_view(obj, _whole(request.GET.get("attempt"), "attempt"))
        except (ValueError, LogNotFound):
            return logs.attempt_view(obj)

    def log_download_url(self, obj: Task, view: LogView) -> str:
        return reverse("admin:workers_task_log_download", args=[obj.pk, view.attempt])

    def log_ended_text(self, obj: Task) -> str:
        return f"The attempt has ended (task {obj.state})."

    def log_chunk(self, obj: Task, request: HttpRequest) -> tuple[Chunk, LogView]:
        attempt = _whole(request.GET.get("attempt"), "attempt")
        offset = _whole(request.GET.get("offset"), "offset") or 0
        if attempt is None:
            raise ValueError("attempt is required")
        logs.attempt_number(obj, attempt)
        chunk, live = logs.attempt_chunk(obj, attempt, offset)
        return chunk, LogView(f"Attempt {attempt}", chunk, live, True, attempt=attempt)

    def log_download_view(self, request: HttpRequest, object_id: int, attempt: int
                          ) -> HttpResponseBase:
        """GET <task>/log/<attempt>/download/: the attempt's whole log as a text file."""
        try:
            task = self._log_object(request, object_id)
            found = logs.attempt_files(task, attempt)
        except LogNotFound as exc:
            return self.log_missing(request, str(exc))
        return _download(found, f"task-{task.pk}-attempt-{attempt}.log")


class WorkerLogs(LogSection[Worker]):
    log_kind = "worker"

    def log_download_urls(self, info: str) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.log_download_view)
        return [path("<int:object_id>/log/download/", view, name=f"{info}_log_download")]

    def log_page_view(self, obj: Worker, request: HttpRequest) -> LogView | None:
        return logs.worker_view(obj)

    def log_download_url(self, obj: Worker, view: LogView) -> str:
        return reverse("admin:workers_worker_log_download", args=[obj.pk])

    def log_ended_text(self, obj: Worker) -> str:
        return f"The worker has ended ({obj.state})."

    def log_chunk(self, obj: Worker, request: HttpRequest) -> tuple[Chunk, LogView]:
        offset = _whole(request.GET.get("offset"), "offset") or 0
        chunk, live = logs.worker_chunk(obj, offset)
        return chunk, LogView("Worker log", chunk, live, True)

    def log_download_view(self, request: HttpRequest, object_id: int) -> HttpResponseBase:
        """GET <worker>/log/download/: the worker's whole log (rotated parts first)."""
        try:
            worker = self._log_object(request, object_id)
            found = logs.worker_files(worker)
        except LogNotFound as exc:
            return self.log_missing(request, str(exc))
        return _download(found, f"worker-{worker.pk}.log")

"""Runs in the admin: the list, and a run's page drawing its graph by dependency level, live,
with pause, resume and cancel (asked first). Thin: the services are in ``workers.runs``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from .. import runs
from ..exceptions import CrucibleError
from ..models import Run
from ..runs import graph
from ..runs.reading import counts
from . import audit, owners

PAGE = "admin/workers/run/page.html"
BODY = f"{PAGE}#run-body"
ACTED = "admin/workers/run/act.html"  # the body, and the flash out of band
POLL_SECONDS = 2
ACTIONS = {"pause": "workers.manage_workers", "resume": "workers.manage_workers",
           "cancel": "workers.cancel_task"}
DONE = {"pause": "Paused run {}: running tasks finish, no new ones start.",
        "resume": "Resumed run {}.", "cancel": "Cancelled run {}: running tasks are stopped."}


if TYPE_CHECKING:
    RunAdminBase = admin.ModelAdmin[Run]
else:  # the admin classes are not subscriptable at run time
    RunAdminBase = admin.ModelAdmin


@admin.register(Run)
class RunAdmin(RunAdminBase):
    list_display = ("id", "name", "state_badge", "progress", "failure_policy", "mode",
                    "created_at", "finished_at")
    list_display_links = ("id", "name")
    list_filter = ("state", "failure_policy", "mode")
    search_fields = ("name",)
    ordering = ("-id",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs are submitted as documents: API, command line, Python

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("workers.view_task")

    @admin.display(description="State", ordering="state")
    def state_badge(self, run: Run) -> str:
        return format_html('<span class="cr-badge cr-badge--{}">{}</span>', run.state.lower(),
                           run.state.lower())

    @admin.display(description="Progress")
    def progress(self, run: Run) -> str:
        tally = counts(run)
        total = sum(tally.values())
        done = sum(n for state, n in tally.items() if state in graph.DONE)
        return f"{done}/{total}"

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:run_id>/live/", wrap(self.live), name="workers_run_live"),
            path("<int:run_id>/act/<str:action>/", wrap(self.act), name="workers_run_act"),
            *super().get_urls(),
        ]

    def _context(self, request: HttpRequest, run_id: int) -> dict[str, Any]:
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            found = runs.report(run_id)
        except runs.RunNotFound:
            raise Http404(f"no run with id {run_id}") from None
        return {
            "graph": graph.build(found),
            "run": found.run,
            "poll_seconds": POLL_SECONDS,
            "can": {action: request.user.has_perm(perm) for action, perm in ACTIONS.items()},
        }

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not object_id.isdigit():
            raise Http404("no such run")
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   **self._context(request, int(object_id))}
        context["title"] = f"Run {object_id}: {context['run'].name}"
        context["owners"] = owners.referring(context["run"])
        request.current_app = self.admin_site.name
        return TemplateResponse(request, PAGE, context)

    @staticmethod
    def _fragment(request: HttpRequest, context: dict[str, Any],
                  template: str = BODY) -> HttpResponse:
        response = TemplateResponse(request, template, context)
        add_never_cache_headers(response)
        return response

    @staticmethod
    def _flash(context: dict[str, Any], text: str) -> dict[str, Any]:
        return {**context, "flash": text}

    def live(self, request: HttpRequest, run_id: int) -> HttpResponse:
        """GET .../live/: the page's body alone, for polling."""
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        return self._fragment(request, self._context(request, run_id))

    def act(self, request: HttpRequest, run_id: int, action: str) -> HttpResponse:
        """POST .../act/pause|resume|cancel/: do it, answer the refreshed body."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if action not in ACTIONS:
            raise Http404(f"no action {action}")
        if not request.user.has_perm(ACTIONS[action]):
            raise PermissionDenied
        flash = self._do(request, run_id, action)
        return self._fragment(request, self._flash(self._context(request, run_id), flash), ACTED)

    @staticmethod
    def _do(request: HttpRequest, run_id: int, action: str) -> str:
        """Pause, resume or cancel; what to tell the operator."""
        try:
            if action == "cancel":
                run = runs.cancel(run_id, by=request.user.get_username())
            else:
                run = (runs.pause if action == "pause" else runs.resume)(run_id)
        except runs.RunNotFound:
            raise Http404(f"no run with id {run_id}") from None
        except CrucibleError as exc:
            return f"Not done: {exc}"
        audit.record(request.user, run, action)
        return DONE[action].format(run_id)

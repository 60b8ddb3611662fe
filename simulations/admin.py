"""Admin pages: submit from a schema-generated form, follow progress, read results, plots,
logs and files. Thin: parse, check permission, call a service, render.

Loaded by config.urls (admin autodiscovery), never by worker processes; matplotlib is
imported only when a plot is drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_POST

from workers.exceptions import TaskNotFound
from workers.web.admin_tasks import LIVE_ROWS, live_context, rows_only

from . import pages, registry, services, workdir
from .exceptions import FileRefused, InvalidParameters, UnknownKind
from .forms import SubmitForm
from .models import Simulation, Sweep

if TYPE_CHECKING:
    from pathlib import Path

    SimulationBase = admin.ModelAdmin[Simulation]
    SweepBase = admin.ModelAdmin[Sweep]
else:
    SimulationBase = SweepBase = admin.ModelAdmin

TEMPLATES = "simulations/admin"
ROWS_TARGET = "cr-sim-rows"  # the simulation list's refreshed rows
STATE_COLOURS = {
    "WAITING": "#8a8a8a", "QUEUED": "#5b80b2", "RUNNING": "#d98c00",
    "SUCCEEDED": "#2e8540", "FAILED": "#ba2121", "CANCELLED": "#6d6d6d",
}
INLINE_TYPES = {".png"}


def progress_bar(percent: int) -> str:
    return format_html(
        '<span class="sim-bar" style="display:inline-block;box-sizing:border-box;width:120px;'
        "height:10px;background:var(--darkened-bg,#f8f8f8);border:1px solid var(--border-color,"
        '#ccc);border-radius:5px;vertical-align:middle;overflow:hidden">'
        '<span style="display:block;height:100%;background:var(--link-fg,#417893);width: {}%">'
        "</span></span>"
        " {}%",
        percent, percent,
    )


def state_badge(state: str) -> str:
    colour = STATE_COLOURS.get(state, "#666")
    return format_html('<strong class="sim-state" style="color:{}">{}</strong>', colour,
                       state.lower())


def serve_file(directory: Path, name: str, *, inline: bool) -> FileResponse:
    try:
        target = workdir.resolve(directory, name)
    except FileRefused as exc:
        raise Http404(str(exc)) from exc
    try:
        stream = target.open("rb")
    except OSError as exc:  # removed or unreadable since it was found
        raise Http404(f"cannot read {name!r}") from exc
    # Pictures may show in the page; everything else is a download, never rendered.
    show = inline and target.suffix.lower() in INLINE_TYPES
    return FileResponse(stream, as_attachment=not show, filename=target.name)


def _detail(request: HttpRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    """The whole page; for htmx polls only its status block, or a reload once it ended
    (results, plot and files appear)."""
    if not getattr(request, "htmx", False):
        return TemplateResponse(request, template, context)
    if not context["active"]:
        return HttpResponse(headers={"HX-Refresh": "true"})
    return TemplateResponse(request, f"{template}#status", context)


class _PageMixin:
    """Shared by both admins: the page context and their own URLs."""

    admin_site: admin.AdminSite

    def _context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), **extra}

    def _url(self, name: str, *args: object) -> str:
        return reverse(f"admin:simulations_{name}", args=args)


@admin.register(Simulation)
class SimulationAdmin(_PageMixin, SimulationBase):
    list_display = ("id", "title", "kind", "state", "progress", "task_cell", "memory",
                    "submitted_by", "created_at")
    list_display_links = ("id", "title")
    list_filter = ("kind", "task__state")
    search_fields = ("name", "kind")
    list_select_related = ("task", "submitted_by")
    list_per_page = 50

    @admin.display(description="name")
    def title(self, obj: Simulation) -> str:
        return str(obj)

    @admin.display(description="state")
    def state(self, obj: Simulation) -> str:
        return state_badge(obj.state)

    @admin.display(description="progress")
    def progress(self, obj: Simulation) -> str:
        return progress_bar(obj.progress_percent)

    @admin.display(description="memory", ordering="memory_mb")
    def memory(self, obj: Simulation) -> str:
        return f"{obj.memory_mb} MB"

    @admin.display(description="task")
    def task_cell(self, obj: Simulation) -> str:
        """Its task and the worker running it: the way to attempts, logs and the worker."""
        task = obj.task
        if task is None:
            return "-"
        link = format_html('<a href="{}">task {}</a>',
                           reverse("admin:workers_task_change", args=[task.pk]), task.pk)
        if task.worker_id is None or task.state != "RUNNING":
            return link
        worker = reverse("admin:workers_worker_change", args=[task.worker_id])
        return format_html('{} on <a href="{}">worker {}</a>', link, worker, task.worker_id)

    def changelist_view(self, request: HttpRequest,
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        """Refreshed while open: the rows alone when the list's script asks for them."""
        context = {**(extra_context or {}), **live_context(ROWS_TARGET)}
        return rows_only(request, super().changelist_view(request, context), LIVE_ROWS,
                         ROWS_TARGET)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("submit/", view(self.choose_view), name="simulations_simulation_submit"),
            path("submit/<str:kind>/", view(self.submit_view),
                 name="simulations_simulation_submit_kind"),
            path("<int:object_id>/plot.svg", view(self.plot_view),
                 name="simulations_simulation_plot"),
            path("<int:object_id>/files/<path:name>", view(self.file_view),
                 name="simulations_simulation_file"),
            path("<int:object_id>/cancel/", view(self.cancel_view),
                 name="simulations_simulation_cancel"),
            *super().get_urls(),
        ]

    def _simulation(self, request: HttpRequest, object_id: str | int) -> Simulation:
        simulation = get_object_or_404(
            Simulation.objects.select_related("task", "submitted_by", "sweep"), pk=object_id
        )
        if not self.has_view_permission(request, simulation):
            raise PermissionDenied
        return simulation

    def add_view(self, request: HttpRequest, form_url: str = "",
                 extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return HttpResponseRedirect(self._url("simulation_submit"))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        simulation = self._simulation(request, object_id)
        context = self._context(
            request, title=str(simulation), opts=self.opts,
            can_cancel=self.has_change_permission(request, simulation),
            **pages.simulation_page(simulation),
        )
        return _detail(request, f"{TEMPLATES}/simulation_detail.html", context)

    @method_decorator(require_GET)
    def choose_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        context = self._context(request, title="Submit a simulation", opts=self.opts,
                                kinds=registry.kinds())
        return TemplateResponse(request, f"{TEMPLATES}/submit_choose.html", context)

    def submit_view(self, request: HttpRequest, kind: str) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        try:
            chosen = registry.get(kind)
        except UnknownKind as exc:
            raise Http404(str(exc)) from exc
        form = SubmitForm(chosen, request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                return self._submit(request, form)
            except InvalidParameters as exc:
                form.show_errors(exc)
        context = self._context(request, title=f"Submit: {chosen.label}", opts=self.opts,
                                kind=chosen, form=form)
        return TemplateResponse(request, f"{TEMPLATES}/submit_form.html", context)

    def _submit(self, request: HttpRequest, form: SubmitForm) -> HttpResponse:
        params, axes = form.submission()
        options = form.options(user_id=request.user.pk)
        if axes:
            sweep = services.submit_sweep(form.kind.name, params, axes, options)
            messages.success(request, f"Submitted {sweep} with "
                                      f"{sweep.simulations.count()} simulations.")
            return HttpResponseRedirect(self._url("sweep_change", sweep.pk))
        simulation = services.submit(form.kind.name, params, options)
        messages.success(request, f"Submitted {simulation}.")
        return HttpResponseRedirect(self._url("simulation_change", simulation.pk))

    @method_decorator(require_GET)
    def plot_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        simulation = self._simulation(request, object_id)
        curves = registry.get(simulation.kind).curves
        if curves is None:
            raise Http404("this kind has no curves to plot")
        from . import plots  # matplotlib is loaded only here

        level = (simulation.result or {}).get(curves.level_key) if curves.level_key else None
        data = workdir.for_simulation(simulation.pk) / curves.filename
        try:
            svg = plots.curves_svg(data, curves, level if isinstance(level, float) else None)
        except plots.CannotPlot as exc:
            raise Http404(str(exc)) from exc
        return HttpResponse(svg, content_type="image/svg+xml")

    @method_decorator(require_GET)
    def file_view(self, request: HttpRequest, object_id: int, name: str) -> FileResponse:
        simulation = self._simulation(request, object_id)
        return serve_file(workdir.for_simulation(simulation.pk), name,
                          inline=request.GET.get("inline") == "1")

    @method_decorator(require_POST)
    def cancel_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        simulation = self._simulation(request, object_id)
        if not self.has_change_permission(request, simulation):
            raise PermissionDenied
        try:
            task = services.cancel(simulation)
        except TaskNotFound as exc:
            raise Http404(str(exc)) from exc
        state = task.state.lower() if task else "unknown"
        messages.info(request, f"Cancel requested for {simulation}: its task is {state}.")
        return HttpResponseRedirect(self._url("simulation_change", simulation.pk))


@admin.register(Sweep)
class SweepAdmin(_PageMixin, SweepBase):
    list_display = ("id", "title", "kind", "points", "state", "submitted_by", "created_at")
    list_display_links = ("id", "title")
    list_filter = ("kind",)
    search_fields = ("name", "kind")
    list_select_related = ("summary_task", "submitted_by")

    @admin.display(description="name")
    def title(self, obj: Sweep) -> str:
        return str(obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Sweep]:
        return super().get_queryset(request).annotate(point_count=Count("simulations"))

    @admin.display(description="points", ordering="point_count")
    def points(self, obj: Sweep) -> int:
        return int(getattr(obj, "point_count", 0))

    @admin.display(description="summary")
    def state(self, obj: Sweep) -> str:
        return state_badge(obj.state)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("<int:object_id>/files/<path:name>", view(self.file_view),
                 name="simulations_sweep_file"),
            path("<int:object_id>/cancel/", view(self.cancel_view),
                 name="simulations_sweep_cancel"),
            *super().get_urls(),
        ]

    def _sweep(self, request: HttpRequest, object_id: str | int) -> Sweep:
        sweep = get_object_or_404(Sweep.objects.select_related("summary_task", "run"),
                                  pk=object_id)
        if not self.has_view_permission(request, sweep):
            raise PermissionDenied
        return sweep

    def add_view(self, request: HttpRequest, form_url: str = "",
                 extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return HttpResponseRedirect(self._url("simulation_submit"))

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> HttpResponse:
        sweep = self._sweep(request, object_id)
        context = self._context(
            request, title=str(sweep), opts=self.opts,
            can_cancel=self.has_change_permission(request, sweep), **pages.sweep_page(sweep),
        )
        return _detail(request, f"{TEMPLATES}/sweep_detail.html", context)

    @method_decorator(require_GET)
    def file_view(self, request: HttpRequest, object_id: int, name: str) -> FileResponse:
        sweep = self._sweep(request, object_id)
        return serve_file(workdir.for_sweep(sweep.pk), name,
                          inline=request.GET.get("inline") == "1")

    @method_decorator(require_POST)
    def cancel_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        sweep = self._sweep(request, object_id)
        if not self.has_change_permission(request, sweep):
            raise PermissionDenied
        count = services.cancel_sweep(sweep, by=request.user.get_username())
        messages.info(request, f"Cancel requested for {count} unfinished tasks of {sweep}.")
        return HttpResponseRedirect(self._url("sweep_change", sweep.pk))

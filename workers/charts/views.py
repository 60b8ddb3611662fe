"""The charts' views: JSON for scripts, an HTMX section for the panel, a page per queue.

Who may see them: staff with ``workers.view_worker``, as for the panel. The JSON answers a
bad ``range`` or ``queue`` with a JSON 400 naming the parameter; the HTML views with a
plain 400 that says the same.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET

from ..api.errors import ApiError, BadRequest
from ..api.parsing import Fields
from ..api.routing import operation
from ..panel.views import VIEW_PERMISSION, can_view
from . import series, svg

TEMPLATE = "workers/charts.html"
SECTION = f"{TEMPLATE}#charts-section"
MAX_QUEUE_NAME = 100
REFRESH_SECONDS = 60
PLAIN = "text/plain; charset=utf-8"


def _choice(request: HttpRequest) -> tuple[str, str | None]:
    """The ``range`` and ``queue`` asked for; BadRequest names a bad one."""
    fields = Fields(request.GET, ("range", "queue"), textual=True)
    name = fields.string("range", max_length=16) or series.DEFAULT_RANGE
    if name not in series.RANGES:
        raise BadRequest("range", f"must be one of {', '.join(series.RANGES)}, not {name!r}")
    queue = fields.string("queue", max_length=MAX_QUEUE_NAME) or None
    return name, queue


@operation("GET", VIEW_PERMISSION)
def chart_json(request: HttpRequest) -> JsonResponse:
    """GET /api/charts/?range=hour|day|week[&queue=NAME]"""
    name, queue = _choice(request)
    return JsonResponse(series.to_json(series.chart_data(name, queue)))


def section_context(name: str, queue: str | None) -> dict[str, Any]:
    data = series.chart_data(name, queue)
    return {
        "charts": svg.charts(data),
        "chart_range": data.range,
        "chart_ranges": list(series.RANGES.values()),
        "chart_queue": queue,
        "chart_sampled": data.sampled,
        "chart_refresh": REFRESH_SECONDS,
        "chart_url": reverse("panel:charts_fragment"),
        "chart_queues": [] if queue else series.queue_names(data),
    }


@require_GET
def charts_fragment(request: HttpRequest) -> HttpResponse:
    """GET /htmx/charts/: the charts section alone, for the range buttons and refreshes."""
    if not can_view(request):
        raise PermissionDenied
    try:
        name, queue = _choice(request)
    except ApiError as exc:
        return HttpResponseBadRequest(exc.message, content_type=PLAIN)
    response = TemplateResponse(request, SECTION, section_context(name, queue))
    add_never_cache_headers(response)
    return response


@require_GET
def charts_page(request: HttpRequest, queue: str | None = None) -> HttpResponse:
    """GET /charts/ and /charts/queue/NAME/: the charts on a page of their own."""
    if not can_view(request):
        raise PermissionDenied
    try:
        name, asked = _choice(request)
        queue = Fields({"queue": queue}, ("queue",), textual=True).string(
            "queue", max_length=MAX_QUEUE_NAME
        ) or asked
    except ApiError as exc:
        return HttpResponseBadRequest(exc.message, content_type=PLAIN)
    title = f"Charts of queue {queue}" if queue else "Charts of all queues"
    site = admin.site
    context = {**site.each_context(request), "title": title, **section_context(name, queue)}
    request.current_app = site.name
    return TemplateResponse(request, TEMPLATE, context)

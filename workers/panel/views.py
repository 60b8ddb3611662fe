"""The panel's views: the Worker Status admin page and its HTMX fragment.

Access to the fragment: staff with ``workers.view_worker``. An anonymous browser request is
redirected to the admin login; an anonymous HTMX request (an expired session while polling)
gets 403, like a signed-in user without the permission, so htmx never swaps a login page
into the panel. The panel's script shows such a failure as "Update failed".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_GET
from django_htmx.middleware import HtmxDetails

from .. import conf
from ..web import status
from . import cards

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite

VIEW_PERMISSION = "workers.view_worker"
MANAGE_PERMISSION = "workers.manage_workers"
TEMPLATE = "workers/status.html"
FRAGMENT = f"{TEMPLATE}#panel-body"
POLL_SECONDS = 5


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def can_view(request: HttpRequest) -> bool:
    user = request.user
    return bool(user.is_active and user.is_staff and user.has_perm(VIEW_PERMISSION))


def panel_context(request: HttpRequest) -> dict[str, Any]:
    return {
        "panel": cards.build(status.snapshot()),
        "can_manage": request.user.has_perm(MANAGE_PERMISSION),
        "node": conf.get().node_address,
        "poll_seconds": POLL_SECONDS,
    }


def status_page(request: HttpRequest, site: AdminSite) -> TemplateResponse:
    """GET /admin/worker-status/ (reached through ``site.admin_view``)."""
    if not can_view(request):
        raise PermissionDenied
    context = {**site.each_context(request), "title": "Worker Status", **panel_context(request)}
    request.current_app = site.name
    return TemplateResponse(request, TEMPLATE, context)


@require_GET
def status_fragment(request: HtmxHttpRequest) -> HttpResponse:
    """GET /htmx/workers/status/: the panel body alone, for polling and after actions."""
    if not request.user.is_authenticated and not request.htmx:
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    if not can_view(request):
        raise PermissionDenied
    response = TemplateResponse(request, FRAGMENT, panel_context(request))
    add_never_cache_headers(response)
    return response

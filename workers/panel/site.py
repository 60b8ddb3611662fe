"""Crucible's AdminSite: the Worker Status page and its place in the admin's navigation."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, path, reverse

from . import views

STATUS_URL_NAME = "worker_status"


class CrucibleAdminSite(admin.AdminSite):
    site_header = "Crucible"
    site_title = "Crucible"
    index_title = "Operations"

    def get_urls(self) -> list[URLResolver | URLPattern]:
        page = path("worker-status/", self.admin_view(self.worker_status), name=STATUS_URL_NAME)
        return [page, *super().get_urls()]

    def worker_status(self, request: HttpRequest) -> HttpResponse:
        return views.status_page(request, self)

    def get_app_list(
        self, request: HttpRequest, app_label: str | None = None
    ) -> list[dict[str, Any]]:
        app_list: list[dict[str, Any]] = super().get_app_list(request, app_label)
        if views.can_view(request):
            for app in app_list:
                if app["app_label"] == "workers":
                    app["models"].insert(0, self._status_entry())
        return app_list

    def _status_entry(self) -> dict[str, Any]:
        """A model-like row, so the index, app index and nav sidebar all link the page."""
        return {
            "name": "Worker Status",
            "object_name": "WorkerStatus",
            "perms": {"add": False, "change": False, "delete": False, "view": True},
            "admin_url": reverse(f"admin:{STATUS_URL_NAME}", current_app=self.name),
            "add_url": None,
            "view_only": True,
        }

"""Routes of the panel's HTMX fragments (included at the site root)."""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "panel"

urlpatterns = [
    path("htmx/workers/status/", views.status_fragment, name="status_fragment"),
]

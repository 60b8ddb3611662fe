"""The engine's routes: the JSON API and the panel's HTMX fragments."""

from django.urls import include, path, re_path

from .api.fallback import unknown_path

urlpatterns = [
    path("", include("workers.api.urls")),
    path("", include("workers.panel.urls")),
    # Last: any other path under /api/ is the API's JSON 404, never an HTML page.
    re_path(r"^api/", unknown_path, name="api-unknown"),
]

"""The engine's routes: the JSON API and the panel's HTMX fragments."""

from django.urls import include, path

urlpatterns = [
    path("", include("workers.api.urls")),
    path("", include("workers.panel.urls")),
]

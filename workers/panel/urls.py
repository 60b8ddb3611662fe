"""Routes of the HTMX panel fragments (filled in by the panel issue)."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []

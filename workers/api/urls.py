"""Routes of the JSON API (filled in by the panel issue)."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []

"""Routes of the simulations app."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []

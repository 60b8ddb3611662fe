"""Routes of the panel's HTMX fragments (included at the site root)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from ..api.routing import Route
from ..charts import views as charts
from . import views

app_name = "panel"

urlpatterns = [
    path("htmx/workers/status/", views.status_fragment, name="status_fragment"),
    path("api/charts/", Route(charts.chart_json), name="charts_json"),
    path("htmx/charts/", charts.charts_fragment, name="charts_fragment"),
    path("charts/", admin.site.admin_view(charts.charts_page), name="charts_page"),
    path("charts/queue/<path:queue>/", admin.site.admin_view(charts.charts_page),
         name="queue_charts_page"),
]

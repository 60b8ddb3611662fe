"""URL routes; admin modules are discovered here, not in worker processes."""

from django.contrib import admin
from django.urls import include, path

admin.autodiscover()

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("workers.urls")),
    path("", include("simulations.urls")),
]

# JSON under the API's paths, Django's own pages elsewhere.
handler400 = "workers.api.fallback.bad_request"
handler500 = "workers.api.fallback.server_error"

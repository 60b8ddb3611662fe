"""URL routes; admin modules are discovered here, not in worker processes."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.autodiscover()

# The unhashed name: WhiteNoise serves it too, and it needs no manifest at import time.
FAVICON = f"/{settings.STATIC_URL.lstrip('/')}crucible/favicon.svg"

urlpatterns = [
    # The admin is the site: "View site" and a bare address lead there, not to a 404.
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    path("favicon.ico", RedirectView.as_view(url=FAVICON)),
    path("admin/", admin.site.urls),
    path("", include("workers.urls")),
    path("", include("simulations.urls")),
]

# JSON under the API's paths, Django's own pages elsewhere.
handler400 = "workers.api.fallback.bad_request"
handler500 = "workers.api.fallback.server_error"

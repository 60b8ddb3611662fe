"""The admin's app config: Crucible's AdminSite, and no autodiscovery in worker processes."""

from __future__ import annotations

from django.contrib.admin.apps import SimpleAdminConfig


class CrucibleAdminConfig(SimpleAdminConfig):
    """SimpleAdminConfig on purpose: config.urls discovers admin modules, workers never do."""

    default_site = "workers.panel.site.CrucibleAdminSite"

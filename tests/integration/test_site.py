"""A newcomer's first clicks: the bare address, "View site" and the favicon lead somewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.staticfiles import finders

pytestmark = pytest.mark.django_db


def test_the_bare_address_and_view_site_lead_to_the_admin(admin_client):
    response = admin_client.get("/")
    assert response.status_code == 302 and response["Location"] == "/admin/"
    page = admin_client.get("/admin/")
    assert 'href="/"' in page.content.decode(), "View site points at the bare address"


def test_the_favicon_is_served(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"] == "/static/crucible/favicon.svg"
    found = finders.find("crucible/favicon.svg")
    assert found and "<svg" in Path(str(found)).read_text()

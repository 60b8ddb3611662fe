"""The submit form: every refusal is shown, each under the field it was typed in."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from simulations.models import Simulation
from workers.models import Task

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]


def field_errors(admin_client: Client, data: dict[str, str]) -> dict[str, list[str]]:
    """The rendered error lists, by the form row they sit in."""
    response = admin_client.post(reverse("admin:simulations_simulation_submit_kind",
                                         args=["slab"]), data)
    assert response.status_code == 200
    assert not Simulation.objects.exists() and not Task.objects.exists()
    html = response.content.decode()
    found: dict[str, list[str]] = {}
    for row in html.split('<div class="form-row field-')[1:]:
        name = row[:row.index('"')]
        errors = re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', row, re.S)
        items = [re.sub(r"<[^>]+>", "", item).strip()
                 for block in errors for item in re.findall(r"<li>(.*?)</li>", block, re.S)]
        if items:
            found[name] = items
    return found


def test_a_bad_sweep_value_is_shown_under_the_sweep_with_the_other_errors(admin_client, crucible):
    """It was shown under the swept parameter's own field, and hid the other errors."""
    errors = field_errors(admin_client, {"sweep": "h=1,5e6", "thickness": "-1",
                                         "priority": "high"})

    assert errors == {
        "sweep": ["h: 5e6 is outside 1..1e5 W/m²K"],
        "thickness": ["thickness: -1 is outside 0.001..2 m"],
        "priority": ["priority: expected a number, got &#x27;high&#x27;"],
    }


def test_a_malformed_sweep_still_checks_the_other_fields(admin_client, crucible):
    errors = field_errors(admin_client, {"sweep": "h=1,2\nthickness", "n": "ten"})

    assert set(errors) == {"sweep", "n"}
    assert errors["sweep"][0].startswith("sweep: expected name=value1,value2")
    assert errors["n"] == ["n: expected a number, got &#x27;ten&#x27;"]


def test_an_unknown_axis_is_shown_under_the_sweep(admin_client, crucible):
    errors = field_errors(admin_client, {"sweep": "hh=1,2", "h": "5e6"})

    assert set(errors) == {"sweep", "h"}
    assert errors["sweep"][0].startswith("hh: unknown parameter")
    assert errors["h"] == ["h: 5e6 is outside 1..1e5 W/m²K"]


def test_a_cross_check_on_a_swept_value_is_shown_under_the_sweep(admin_client, crucible):
    errors = field_errors(admin_client, {"sweep": "target_temp=500,5"})

    assert errors == {"sweep": [
        "target_temp: 5 °C is never reached: it must lie between ambient_temp and "
        "initial_temp (30..900 °C)"]}

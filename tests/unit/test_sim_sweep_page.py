"""The sweep page's points table: its result column is named after what it shows."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from simulations import services
from simulations.kinds import slab, summary
from simulations.models import Simulation, Sweep
from workers.models import Task
from workers.states import TaskState

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]


def points_table(admin_client: Client, sweep: Sweep) -> tuple[list[str], list[list[str]]]:
    """Headings and cell texts of the page's Points table."""
    page = admin_client.get(reverse("admin:simulations_sweep_change", args=[sweep.pk]))
    html = page.content.decode()
    table = html[html.index("<h2>Points</h2>"):]
    table = table[:table.index("</table>")]
    headings = re.findall(r"<th>(.*?)</th>", table)
    rows = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in table.split("<tr>")[2:]]
    return headings, rows


def result_of(point: Simulation, key: str) -> float:
    assert point.result is not None
    return float(point.result[key])


def run_point(point: Simulation) -> None:
    slab.run.call(simulation_id=point.pk)
    assert point.task_id is not None
    Task.objects.filter(pk=point.task_id).update(state=TaskState.SUCCEEDED, progress=1.0)


def test_without_a_target_the_column_shows_and_names_the_final_core_temperature(
        admin_client, crucible):
    """It was headed "Time to target" over final core temperatures."""
    sweep = services.submit_sweep("slab", {"n": "11", "t_end": "60"}, [("h", ["100", "1000"])])
    points = list(sweep.simulations.order_by("pk"))
    for point in points:
        run_point(point)
    summary.summarise.call(sweep_id=sweep.pk)
    sweep.refresh_from_db()

    headings, rows = points_table(admin_client, sweep)

    assert headings[-1] == "Final core temperature (°C)"
    assert "Time to target" not in " ".join(headings)
    for point, row in zip(points, rows, strict=True):
        point.refresh_from_db()
        assert row[-1] == f"{result_of(point, 'final_core_temp'):.6g} °C"


def test_while_it_runs_the_column_names_what_the_finished_points_have(admin_client, crucible):
    sweep = services.submit_sweep("slab", {"n": "11", "t_end": "60"}, [("h", ["100", "1000"])])
    first, _second = sweep.simulations.order_by("pk")
    run_point(first)
    first.refresh_from_db()

    headings, rows = points_table(admin_client, sweep)

    assert headings[-1] == "Final core temperature (°C)"
    assert rows[0][-1] == f"{result_of(first, 'final_core_temp'):.6g} °C"
    assert rows[1][-1] == "-"


def test_with_a_target_the_column_shows_the_time_to_target(admin_client, crucible):
    sweep = services.submit_sweep("slab", {"n": "11", "t_end": "600", "target_temp": "850"},
                                  [("h", ["500", "1000"])])
    points = list(sweep.simulations.order_by("pk"))
    for point in points:
        run_point(point)
    summary.summarise.call(sweep_id=sweep.pk)

    headings, rows = points_table(admin_client, sweep)

    assert headings[-1] == "Time to target (s)"
    for point, row in zip(points, rows, strict=True):
        point.refresh_from_db()
        assert row[-1] == f"{result_of(point, 'time_to_target'):.6g} s"


def test_the_page_links_to_the_sweeps_run_for_its_graph_pause_and_cancel(admin_client, crucible):
    sweep = services.submit_sweep("slab", {"n": "11", "t_end": "60"}, [("h", ["100", "1000"])])
    assert sweep.run_id is not None

    page = admin_client.get(reverse("admin:simulations_sweep_change", args=[sweep.pk]))

    run_page = reverse("admin:workers_run_change", args=[sweep.run_id])
    assert f'<a href="{run_page}">run {sweep.run_id}</a>' in page.content.decode()
    assert admin_client.get(run_page).status_code == 200


def test_the_runs_page_names_and_links_its_sweep(admin_client, crucible):
    sweep = services.submit_sweep("slab", {"n": "11", "t_end": "60"}, [("h", ["100", "1000"])],
                                  services.Options(name="grid"))
    assert sweep.run_id is not None

    page = admin_client.get(reverse("admin:workers_run_change", args=[sweep.run_id]))

    sweep_page = reverse("admin:simulations_sweep_change", args=[sweep.pk])
    assert f'This run is <a href="{sweep_page}">sweep grid</a>.' in page.content.decode()

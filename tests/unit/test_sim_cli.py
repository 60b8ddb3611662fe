"""``manage.py simulate``: ids printed, parameters refused by name (nothing written)."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from simulations.models import Simulation, Sweep
from workers.models import Task

pytestmark = pytest.mark.django_db


def simulate(*args: str) -> str:
    out = StringIO()
    call_command("simulate", *args, stdout=out)
    return out.getvalue()


def nothing_written() -> bool:
    return not (Simulation.objects.exists() or Sweep.objects.exists() or Task.objects.exists())


def test_prints_the_ids_of_a_simulation(crucible):
    out = simulate("slab", "--param", "h=250", "-p", "n=21", "--name", "cli run")
    sim = Simulation.objects.get()
    assert out.splitlines()[0] == f"simulation {sim.pk} (task {sim.task_id})"
    assert sim.parameters["h"] == 250.0
    assert sim.name == "cli run"
    assert sim.submitted_by is None


def test_prints_the_ids_of_a_sweep(crucible):
    out = simulate("slab", "--sweep", "h=10,100,1000", "--sweep", "thickness=0.05,0.1")
    sweep = Sweep.objects.get()
    ids = ", ".join(str(pk) for pk in sweep.simulations.order_by("pk").values_list("pk", flat=True))
    summary = sweep.summary_task_id
    assert out.splitlines()[0] == (
        f"sweep {sweep.pk}: simulations {ids}; summary task {summary}; run {sweep.run_id} "
        f"(`manage.py runs pause|resume|cancel {sweep.run_id}`)")
    assert sweep.simulations.count() == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["slab", "--param", "h=5e6"], "Refused: h: 5e6 is outside 1..1e5 W/m²K"),
        (["slab", "-p", "n=3.5"], "Refused: n: expected a whole number, got '3.5'"),
        (["slab", "-p", "colour=red"], "Refused: colour: unknown parameter"),
        (["slab", "-p", "h=1", "-p", "h=2"], "Refused: h: given twice"),
        (["slab", "--priority", "101"], "Refused: priority: 101 is outside -100..100"),
        (["slab", "--sweep", "h=1,5e6"], "Refused: h: 5e6 is outside 1..1e5 W/m²K"),
        (["slab", "-p", "h=1", "--sweep", "h=1,2"], "Refused: h: given twice"),
        (["slab", "--param", "h"], "expected name=value, got 'h'"),
        (["slab", "--sweep", "h="], "expected name=value1,value2"),
        (["steel"], "no simulation kind 'steel' (known: lorenz, slab)"),
    ],
)
def test_bad_input_is_a_command_error_naming_it(crucible, args, message):
    with pytest.raises(CommandError) as caught:
        simulate(*args)
    assert message in str(caught.value)
    assert nothing_written()


def test_describe_lists_the_parameters_with_units_and_ranges(crucible):
    out = simulate("slab", "--describe")
    assert "h              Heat-transfer coefficient - allowed: 1..1e5 W/m²K; default 500 W/m²K" \
        in out
    assert nothing_written()

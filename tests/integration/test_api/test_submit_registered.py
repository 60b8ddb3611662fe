"""Out of the box, the API submits every @task Crucible registers (the simulation kinds' and
the sweep summary's), by a user with the permission, and refuses a call that does not fit."""

from __future__ import annotations

import pytest

from simulations import registry as kinds
from workers.models import Task
from workers.web import registry

from ..helpers import TASKS
from .conftest import NO_STATIC_ROOT, token_api

pytestmark = [pytest.mark.django_db, NO_STATIC_ROOT]

SUBMIT = "workers.submit_task"


@pytest.fixture(autouse=True)
def no_extra_paths(settings):
    """As shipped: nothing in CRUCIBLE_TASK_ALLOWLIST."""
    settings.CRUCIBLE_TASK_ALLOWLIST = []


def test_every_simulation_kind_and_the_sweep_summary_are_allowed():
    allowed = registry.allowed()

    for kind in kinds.kinds():
        assert kind.func_path in allowed, kind.name
        assert f"simulations.tasks.run_{kind.name}" in allowed, kind.name
    assert "simulations.tasks.summarise_sweep" in allowed


@pytest.mark.parametrize("path", ["simulations.tasks.run_slab", "simulations.kinds.slab.run",
                                  "simulations.tasks.run_lorenz"])
def test_a_user_with_the_permission_submits_a_registered_task(crucible, path):
    api = token_api(SUBMIT)

    response = api.post("/api/tasks/", {"func_path": path, "kwargs": {"simulation_id": 1}})

    assert response.status_code == 201, response.json()
    task = Task.objects.get(pk=response.json()["id"])
    assert (task.func_path, task.kwargs) == (path, {"simulation_id": 1})


def test_the_schema_offers_the_registered_tasks(crucible):
    offered = token_api().get("/api/schema/").json()
    submit = offered["components"]["schemas"]["Submit"]["properties"]["func_path"]["enum"]

    assert {"simulations.tasks.run_slab", "simulations.tasks.summarise_sweep"} <= set(submit)


@pytest.mark.parametrize(
    ("body", "field", "error"),
    [
        ({"func_path": "simulations.tasks.run_slab", "kwargs": {"n": 64}}, "kwargs",
         "kwargs: do not match run_slab(simulation_id): missing a required argument: "
         "'simulation_id'"),
        ({"func_path": f"{TASKS}.add", "args": [1, 2, 3]}, "args",
         "args: do not match add(a, b): too many positional arguments"),
    ],
)
def test_a_call_the_function_cannot_take_is_a_400_naming_the_field(crucible, settings, body,
                                                                   field, error):
    settings.CRUCIBLE_TASK_ALLOWLIST = [f"{TASKS}.add"]

    response = token_api(SUBMIT).post("/api/tasks/", body)

    assert response.status_code == 400
    assert response.json() == {"error": error, "detail": {"field": field}}
    assert not Task.objects.exists()

"""The OpenAPI document says what the endpoints do: every route with its methods and
permission is documented, and every documented response is produced here and matches."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern
from django.utils import timezone

from workers.api import urls
from workers.api.routing import Route
from workers.api.schema import document
from workers.models import Run
from workers.models.run import RunState
from workers.queue import pausing
from workers.states import TaskState, WorkerState

from ..helpers import TASKS
from .conftest import NO_STATIC_ROOT, Api, session_api, task_row, worker_row
from .openapi import KNOWN, Checker, resolve

pytestmark = [pytest.mark.django_db, NO_STATIC_ROOT]

DOCUMENT = document()


def template(pattern: URLPattern) -> str:
    return "/" + re.sub(r"<\w+:(\w+)>", r"{\1}", str(pattern.pattern))


ROUTES: dict[str, Route] = {template(p): p.callback for p in urls.urlpatterns}  # type: ignore[misc]


def test_every_route_is_documented_and_nothing_else():
    assert set(ROUTES) == set(DOCUMENT["paths"])


@pytest.mark.parametrize("path", sorted(ROUTES))
def test_each_route_documents_its_methods_permissions_and_path_parameters(path):
    route, item = ROUTES[path], DOCUMENT["paths"][path]

    assert sorted(method.upper() for method in item) == route.methods
    for method, operation in route.operations.items():
        documented = item[method.lower()]
        assert documented["x-permission"] == operation.permission
        in_path = {p["name"] for p in documented.get("parameters", []) if p["in"] == "path"}
        assert in_path == set(re.findall(r"\{(\w+)\}", path))


def test_the_document_is_served_as_it_is_built():
    response = Client().get("/api/schema/")

    assert response.status_code == 200
    assert response.json() == DOCUMENT
    assert DOCUMENT["openapi"] == "3.1.0"


def _schemas(node: Any) -> list[dict[str, Any]]:
    """Every schema object below ``node`` (a schema), depth first."""
    found = [node]
    for child in node.get("properties", {}).values():
        found += _schemas(child)
    for key in ("items", "additionalProperties", "propertyNames"):
        if isinstance(node.get(key), dict):
            found += _schemas(node[key])
    for option in node.get("anyOf", []):
        found += _schemas(option)
    return found


def _every_schema() -> list[dict[str, Any]]:
    roots = list(DOCUMENT["components"]["schemas"].values())
    for item in DOCUMENT["paths"].values():
        for operation in item.values():
            roots += [p["schema"] for p in operation.get("parameters", [])]
            for media in operation.get("requestBody", {}).get("content", {}).values():
                roots.append(media["schema"])
            for response in operation["responses"].values():
                roots += [m["schema"] for m in resolve(DOCUMENT, response)["content"].values()]
    return [schema for root in roots for schema in _schemas(root)]


def test_the_document_uses_only_what_the_checker_checks_and_its_refs_resolve():
    for schema in _every_schema():
        assert set(schema) <= KNOWN, set(schema) - KNOWN
        if "$ref" in schema:
            assert resolve(DOCUMENT, schema)


# --- Every documented response, produced and checked against its schema ---


def documented() -> list[tuple[str, str, int]]:
    return sorted(
        (method.upper(), path, int(status))
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        for status in operation["responses"]
    )


@dataclass
class World:
    """What a scenario may use; ``api`` is a superuser's session."""

    api: Api
    node: str

    def worker(self, state: str = WorkerState.RUNNING) -> int:
        return worker_row(self.node, state=state).pk

    def task(self, state: str = TaskState.QUEUED) -> int:
        return task_row(state).pk

    def run(self, state: str = RunState.RUNNING) -> int:
        made = Run.objects.create(name="nightly", state=state)
        task_row(TaskState.QUEUED, run=made, name="A")
        return made.pk


Scenario = Callable[[World], Any]
SCENARIOS: dict[tuple[str, str, int], Scenario] = {}


def scenario(method: str, path: str, status: int) -> Callable[[Scenario], Scenario]:
    def register(make: Scenario) -> Scenario:
        SCENARIOS[(method, path, status)] = make
        return make

    return register


def _concrete(world: World, path: str) -> str:
    return path.format(worker_id=world.worker(), task_id=world.task(), run_id=world.run())


def _unauthorized(method: str, path: str) -> Scenario:
    def make(world: World) -> Any:
        bad = Api(Client(), {"Authorization": "Bearer nope"})
        return bad.call(method, _concrete(world, path))

    return make


def _forbidden(method: str, path: str) -> Scenario:
    def make(world: World) -> Any:
        return session_api().call(method, _concrete(world, path))

    return make


for method_, path_, status_ in documented():
    if status_ == 401:
        SCENARIOS[(method_, path_, 401)] = _unauthorized(method_, path_)
    elif status_ == 403:
        SCENARIOS[(method_, path_, 403)] = _forbidden(method_, path_)


@scenario("GET", "/api/workers/status/", 200)
def _status(w: World) -> Any:
    w.worker()
    return w.api.get("/api/workers/status/")


@scenario("POST", "/api/workers/add/", 201)
def _add(w: World) -> Any:
    body = {"count": 1}
    Checker(DOCUMENT).validate(body, request_schema("POST", "/api/workers/add/"))
    return w.api.post("/api/workers/add/", body)


@scenario("POST", "/api/workers/add/", 400)
def _add_bad(w: World) -> Any:
    return w.api.post("/api/workers/add/", {"count": 0})


@scenario("POST", "/api/workers/add/", 409)
def _add_full(w: World) -> Any:
    w.worker()
    return w.api.post("/api/workers/add/")


@scenario("POST", "/api/workers/drain/", 200)
def _drain(w: World) -> Any:
    return w.api.post("/api/workers/drain/", {"worker_id": w.worker()})


@scenario("POST", "/api/workers/drain/", 400)
def _drain_bad(w: World) -> Any:
    return w.api.post("/api/workers/drain/", {"worker_id": "one"})


@scenario("POST", "/api/workers/drain/", 404)
def _drain_none(w: World) -> Any:
    return w.api.post("/api/workers/drain/")


@scenario("POST", "/api/workers/drain/", 409)
def _drain_dead(w: World) -> Any:
    return w.api.post("/api/workers/drain/", {"worker_id": w.worker(WorkerState.DEAD)})


@scenario("POST", "/api/workers/{worker_id}/abort/", 200)
def _abort(w: World) -> Any:
    return w.api.post(f"/api/workers/{w.worker()}/abort/")


@scenario("POST", "/api/workers/{worker_id}/undrain/", 200)
def _undrain(w: World) -> Any:
    draining = worker_row(w.node, state=WorkerState.DRAINING, drain_requested_at=timezone.now())
    return w.api.post(f"/api/workers/{draining.pk}/undrain/")


def _action(kind: str, action: str, state: str | None, body: Any = None) -> Scenario:
    """POST to an action of a ``kind`` (task, worker) in ``state``, or of an unknown one."""

    def make(world: World) -> Any:
        found = getattr(world, kind)(state) if state else 31337
        return world.api.post(f"/api/{kind}s/{found}/{action}/", body)

    return make


for verb_, not_now_ in (("abort", WorkerState.FAILED), ("undrain", WorkerState.RUNNING)):
    path_ = f"/api/workers/{{worker_id}}/{verb_}/"
    SCENARIOS[("POST", path_, 400)] = _action("worker", verb_, WorkerState.RUNNING, {"now": True})
    SCENARIOS[("POST", path_, 404)] = _action("worker", verb_, None)
    SCENARIOS[("POST", path_, 409)] = _action("worker", verb_, not_now_)


@scenario("POST", "/workers/tick/", 200)
def _tick(w: World) -> Any:
    return w.api.post("/workers/tick/")


@scenario("POST", "/workers/tick/", 400)
def _tick_bad(w: World) -> Any:
    return w.api.post("/workers/tick/", raw="not json")


@scenario("GET", "/api/tasks/", 200)
def _list(w: World) -> Any:
    w.task()
    return w.api.get("/api/tasks/", state="QUEUED")


@scenario("GET", "/api/tasks/", 400)
def _list_bad(w: World) -> Any:
    return w.api.get("/api/tasks/", state="SOMEDAY")


@scenario("POST", "/api/tasks/", 201)
def _submit(w: World) -> Any:
    body = {"func_path": f"{TASKS}.add", "args": [1, 2], "priority": 3,
            "run_after": "2030-01-01T00:00:00Z", "depends_on": [w.task()]}
    Checker(document()).validate(body, request_schema("POST", "/api/tasks/"))
    return w.api.post("/api/tasks/", body)


@scenario("POST", "/api/tasks/", 400)
def _submit_bad(w: World) -> Any:
    return w.api.post("/api/tasks/", {"func_path": "os.system", "args": ["id"]})


@scenario("POST", "/api/tasks/bulk/", 201)
def _submit_many(w: World) -> Any:
    body = {"tasks": [{"func_path": f"{TASKS}.add", "args": [n, 2]} for n in range(3)]}
    Checker(document()).validate(body, request_schema("POST", "/api/tasks/bulk/"))
    return w.api.post("/api/tasks/bulk/", body)


@scenario("POST", "/api/tasks/bulk/", 400)
def _submit_many_bad(w: World) -> Any:
    return w.api.post("/api/tasks/bulk/", {"tasks": [{"func_path": "os.system"}]})


@scenario("GET", "/api/tasks/{task_id}/", 200)
def _detail(w: World) -> Any:
    return w.api.get(f"/api/tasks/{w.task(TaskState.FAILED)}/")


@scenario("GET", "/api/tasks/{task_id}/", 404)
def _detail_unknown(w: World) -> Any:
    return w.api.get("/api/tasks/31337/")


for action_, ok_, refused_ in (("cancel", TaskState.QUEUED, TaskState.SUCCEEDED),
                               ("retry", TaskState.FAILED, TaskState.RUNNING)):
    path_ = f"/api/tasks/{{task_id}}/{action_}/"
    SCENARIOS[("POST", path_, 200)] = _action("task", action_, ok_)
    SCENARIOS[("POST", path_, 400)] = _action("task", action_, ok_, {"why": "because"})
    SCENARIOS[("POST", path_, 404)] = _action("task", action_, None)
    SCENARIOS[("POST", path_, 409)] = _action("task", action_, refused_)


@scenario("GET", "/api/queues/", 200)
def _queues(w: World) -> Any:
    w.task()
    pausing.pause("sims")
    return w.api.get("/api/queues/")


@scenario("GET", "/api/queues/", 400)
def _queues_bad(w: World) -> Any:
    return w.api.get("/api/queues/", state="QUEUED")


def _queue_verb(verb: str, name: str) -> Scenario:
    def make(world: World) -> Any:
        return world.api.post(f"/api/queues/{verb}/", {"queue": name})

    return make


for verb_ in ("pause", "resume"):
    SCENARIOS[("POST", f"/api/queues/{verb_}/", 200)] = _queue_verb(verb_, "sims")
    SCENARIOS[("POST", f"/api/queues/{verb_}/", 400)] = _queue_verb(verb_, "")


@scenario("GET", "/api/schema/", 200)
def _schema(w: World) -> Any:
    return Api(Client()).get("/api/schema/")


@scenario("GET", "/api/runs/", 200)
def _runs(w: World) -> Any:
    w.run()
    return w.api.get("/api/runs/", state="running")


@scenario("GET", "/api/runs/", 400)
def _runs_bad(w: World) -> Any:
    return w.api.get("/api/runs/", state="SOMEDAY")


@scenario("POST", "/api/runs/", 201)
def _run_submit(w: World) -> Any:
    body = {"name": "diamond", "failure_policy": "continue", "max_parallel": 2, "tasks": [
        {"name": "A", "task": f"{TASKS}.record", "args": ["a"]},
        {"name": "B", "task": f"{TASKS}.record", "args": ["b"], "depends_on": ["A"]},
        {"name": "C", "task": f"{TASKS}.add", "args": [1, 2], "depends_on": ["A"]},
        {"name": "D", "task": f"{TASKS}.noop", "depends_on": ["B", "C"], "priority": 5},
    ]}
    Checker(document()).validate(body, request_schema("POST", "/api/runs/"))
    return w.api.post("/api/runs/", body)


@scenario("POST", "/api/runs/", 400)
def _run_cycle(w: World) -> Any:
    return w.api.post("/api/runs/", {"name": "loop", "tasks": [
        {"name": "A", "task": f"{TASKS}.noop", "depends_on": ["B"]},
        {"name": "B", "task": f"{TASKS}.noop", "depends_on": ["A"]},
    ]})


@scenario("POST", "/api/runs/", 409)
def _run_lock_held(w: World) -> Any:
    def locked(name: str) -> dict[str, Any]:
        return {"name": name, "locks": ["/data/results"],
                "tasks": [{"name": "A", "task": f"{TASKS}.noop"}]}

    assert w.api.post("/api/runs/", locked("holder")).status_code == 201
    return w.api.post("/api/runs/", locked("refused"))


@scenario("GET", "/api/runs/{run_id}/", 200)
def _run_detail(w: World) -> Any:
    return w.api.get(f"/api/runs/{w.run()}/")


@scenario("GET", "/api/runs/{run_id}/", 404)
def _run_unknown(w: World) -> Any:
    return w.api.get("/api/runs/31337/")


for verb_, active_ in (("pause", RunState.RUNNING), ("resume", RunState.PAUSED),
                      ("cancel", RunState.RUNNING)):
    path_ = f"/api/runs/{{run_id}}/{verb_}/"
    SCENARIOS[("POST", path_, 200)] = _action("run", verb_, active_)
    SCENARIOS[("POST", path_, 400)] = _action("run", verb_, active_, {"why": "because"})
    SCENARIOS[("POST", path_, 404)] = _action("run", verb_, None)
    SCENARIOS[("POST", path_, 409)] = _action("run", verb_, RunState.COMPLETED)


def request_schema(method: str, path: str) -> dict[str, Any]:
    """Built now: the submit body names the tasks allowed by this test's settings."""
    body = document()["paths"][path][method.lower()]["requestBody"]
    schema: dict[str, Any] = body["content"]["application/json"]["schema"]
    return schema


def test_every_scenario_is_a_documented_response():
    assert set(SCENARIOS) <= set(documented())


@pytest.mark.usefixtures("capacity", "allowlist", "spawning")
@pytest.mark.parametrize("response", documented(), ids=str)
def test_every_documented_response_is_produced_and_matches_its_schema(
    response, admin_api, crucible
):
    method, path, status = response
    make = SCENARIOS.get(response)
    assert make is not None, f"no scenario produces {status} for {method} {path}"

    # Api.check validates the body against the documented response of this status.
    produced = make(World(api=admin_api, node=crucible.node_address))

    assert produced.status_code == status

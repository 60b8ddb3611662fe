"""Who may call what: anonymous, bad tokens, staff with and without each permission, CSRF."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from workers.models import ApiToken, Task, Worker
from workers.states import TaskState, WorkerState
from workers.web import tokens

from ..helpers import TASKS
from .conftest import NO_STATIC_ROOT, Api, make_user, session_api, task_row, token_api, worker_row

pytestmark = [pytest.mark.django_db, NO_STATIC_ROOT]

API_PERMISSIONS = (
    "workers.view_worker", "workers.manage_workers", "workers.view_task",
    "workers.submit_task", "workers.cancel_task", "workers.retry_task",
)


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # {worker}, {queued}, {failed}: ids of the objects of the `world` fixture
    permission: str | None  # None: public
    ok: int  # what a caller with the permission gets (add: 409, the pool is full; undrain:
    # 409, the worker is not draining)
    body: Any = None

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


ENDPOINTS = [
    Endpoint("GET", "/api/workers/status/", "workers.view_worker", 200),
    Endpoint("POST", "/api/workers/add/", "workers.manage_workers", 409),
    Endpoint("POST", "/api/workers/drain/", "workers.manage_workers", 200),
    Endpoint("POST", "/api/workers/{worker}/abort/", "workers.manage_workers", 200),
    Endpoint("POST", "/api/workers/{worker}/undrain/", "workers.manage_workers", 409),
    Endpoint("POST", "/workers/tick/", "workers.manage_workers", 200),
    Endpoint("GET", "/api/tasks/", "workers.view_task", 200),
    Endpoint("POST", "/api/tasks/", "workers.submit_task", 201,
             {"func_path": f"{TASKS}.record", "args": ["via api"]}),
    Endpoint("GET", "/api/tasks/{queued}/", "workers.view_task", 200),
    Endpoint("POST", "/api/tasks/{queued}/cancel/", "workers.cancel_task", 200),
    Endpoint("POST", "/api/tasks/{failed}/retry/", "workers.retry_task", 200),
    Endpoint("GET", "/api/schema/", None, 200),
]
PROTECTED = [endpoint for endpoint in ENDPOINTS if endpoint.permission]
POSTS = [endpoint for endpoint in ENDPOINTS if endpoint.method == "POST"]


@pytest.fixture
def world(crucible: Any, capacity: Any, allowlist: Any) -> dict[str, int]:
    """One running worker (so the pool of one is full), a queued and a failed task."""
    return {
        "worker": worker_row(crucible.node_address).pk,
        "queued": task_row(TaskState.QUEUED).pk,
        "failed": task_row(TaskState.FAILED).pk,
    }


def call(api: Api, endpoint: Endpoint, world: dict[str, int]) -> Any:
    return api.call(endpoint.method, endpoint.path.format(**world), endpoint.body)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_anonymous_callers_get_401_with_a_bearer_challenge(world, endpoint):
    response = call(Api(Client()), endpoint, world)

    if endpoint.permission is None:
        assert response.status_code == 200
    else:
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="crucible"'
        assert "authentication required" in response.json()["error"]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_bad_token_gets_401_even_on_public_endpoints(world, endpoint):
    api = Api(Client(), {"Authorization": "Bearer not-a-token"})

    response = call(api, endpoint, world)

    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]


@pytest.mark.parametrize("endpoint", PROTECTED, ids=str)
def test_staff_with_every_other_permission_get_403(world, endpoint):
    others = [perm for perm in API_PERMISSIONS if perm != endpoint.permission]

    response = call(session_api(*others), endpoint, world)

    assert response.status_code == 403
    assert response.json()["detail"] == {"permission": endpoint.permission}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_staff_with_the_permission_are_let_in(world, endpoint):
    perms = [endpoint.permission] if endpoint.permission else []

    assert call(session_api(*perms), endpoint, world).status_code == endpoint.ok


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_token_acts_with_its_users_permissions(world, endpoint):
    perms = [endpoint.permission] if endpoint.permission else []

    assert call(token_api(*perms), endpoint, world).status_code == endpoint.ok


@pytest.mark.parametrize("endpoint", PROTECTED, ids=str)
def test_a_token_without_the_permission_gets_403(world, endpoint):
    assert call(token_api(), endpoint, world).status_code == 403


@pytest.mark.parametrize("endpoint", PROTECTED, ids=str)
def test_superusers_may_do_everything(world, endpoint):
    assert call(session_api(superuser=True), endpoint, world).status_code == endpoint.ok


@pytest.mark.parametrize("endpoint", PROTECTED, ids=str)
def test_non_staff_users_get_403_whatever_their_permissions(world, endpoint):
    response = call(token_api(*API_PERMISSIONS, staff=False), endpoint, world)

    assert response.status_code == 403
    assert "staff" in response.json()["error"]


def test_a_token_of_an_inactive_user_is_refused(world):
    made = tokens.create(make_user("workers.view_worker", active=False))
    api = Api(Client(), {"Authorization": f"Bearer {made.key}"})

    assert api.get("/api/workers/status/").status_code == 401


def test_a_revoked_token_is_refused(world):
    made = tokens.create(make_user("workers.view_worker"))
    api = Api(Client(), {"Authorization": f"Bearer {made.key}"})
    assert api.get("/api/workers/status/").status_code == 200

    tokens.revoke(made.token.prefix)

    assert api.get("/api/workers/status/").status_code == 401


def test_a_token_records_when_it_was_last_used(world):
    made = tokens.create(make_user("workers.view_task"))
    assert made.token.last_used_at is None

    Api(Client(), {"Authorization": f"Bearer {made.key}"}).get("/api/tasks/")

    assert ApiToken.objects.get(pk=made.token.pk).last_used_at is not None


def test_a_bad_token_never_falls_back_to_the_session(world):
    client = Client()
    client.force_login(make_user(superuser=True))

    response = Api(client, {"Authorization": "Bearer stale"}).get("/api/workers/status/")

    assert response.status_code == 401


def test_other_authorization_schemes_leave_the_session_in_charge(world):
    client = Client()
    client.force_login(make_user("workers.view_worker"))
    proxy = {"Authorization": "Basic dXNlcjpwdw=="}  # e.g. added by a proxy in front

    assert Api(client, proxy).get("/api/workers/status/").status_code == 200


# --- CSRF: sessions must prove it, bearer tokens need not ---


def csrf_client(*perms: str) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user(*perms, superuser=True))
    return client


def csrf_token(client: Client) -> str:
    client.get("/api/workers/status/")  # any page: the middleware sets the cookie on use
    return client.cookies["csrftoken"].value if "csrftoken" in client.cookies else ""


@pytest.mark.parametrize("endpoint", POSTS, ids=str)
def test_a_session_post_without_the_csrf_token_is_403(world, endpoint):
    response = call(Api(csrf_client()), endpoint, world)

    assert response.status_code == 403
    assert response.json()["error"].startswith("CSRF check failed")


@pytest.mark.parametrize("endpoint", POSTS, ids=str)
def test_a_session_post_with_the_csrf_header_is_accepted(world, endpoint):
    client = csrf_client()
    client.cookies["csrftoken"] = "a" * 32
    api = Api(client, {"X-CSRFToken": "a" * 32})

    assert call(api, endpoint, world).status_code == endpoint.ok


@pytest.mark.parametrize("endpoint", POSTS, ids=str)
def test_a_bearer_token_needs_no_csrf_token(world, endpoint):
    made = tokens.create(make_user(superuser=True))
    api = Api(Client(enforce_csrf_checks=True), {"Authorization": f"Bearer {made.key}"})

    assert call(api, endpoint, world).status_code == endpoint.ok


# --- Methods ---


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
def test_a_method_the_path_does_not_serve_is_a_json_405(world, endpoint):
    client = Client()
    client.force_login(make_user(superuser=True))
    path = endpoint.path.format(**world)
    wrong = "PUT" if endpoint.path == "/api/tasks/" else ("POST" if endpoint.method == "GET"
                                                          else "GET")

    response = client.generic(wrong, path)

    assert response.status_code == 405
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"]["allowed"] == response["Allow"].split(", ")
    assert endpoint.method in response["Allow"]


def test_refused_calls_change_nothing(world):
    for endpoint in PROTECTED:
        call(session_api(), endpoint, world)
    worker = Worker.objects.get(pk=world["worker"])
    assert worker.state == WorkerState.RUNNING
    assert worker.drain_requested_at is None and worker.abort_requested_at is None
    assert Task.objects.get(pk=world["queued"]).state == TaskState.QUEUED
    assert Task.objects.get(pk=world["failed"]).state == TaskState.FAILED
    assert Task.objects.count() == 2, "nothing was submitted"
    assert Worker.objects.count() == 1, "nothing was started"

"""No 500 and no HTML from the API: input Django or the database cannot take is a JSON 400,
a path no route matches a JSON 404, and nothing is written."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from workers.models import Task, Worker

from ..helpers import TASKS
from .conftest import NO_STATIC_ROOT, Api, make_user, session_api, worker_row

pytestmark = [pytest.mark.django_db, NO_STATIC_ROOT]


def raw_client(*, superuser: bool = True) -> Client:
    client = Client()
    client.force_login(make_user(superuser=superuser))
    return client


def assert_json_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json", response.content[:300]
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "detail"}
    return body


# --- run_after beyond what a datetime holds in UTC ---


@pytest.mark.parametrize("moment", [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00.000001+00:01",
])
def test_a_run_after_beyond_the_datetime_range_is_400(admin_api, allowlist, moment):
    response = admin_api.post("/api/tasks/", {"func_path": f"{TASKS}.noop", "run_after": moment})

    body = assert_json_error(response, 400)
    assert body["detail"] == {"field": "run_after"}
    assert "out of range" in body["error"]
    assert not Task.objects.exists()


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00-01:00", "9999-12-31T23:59:59+14:00",
                                    "2030-06-01T12:00:00.123456789Z", "2030-06-01t12:00:00z"])
def test_a_run_after_at_the_edges_of_the_range_is_stored(admin_api, allowlist, moment):
    response = admin_api.post("/api/tasks/", {"func_path": f"{TASKS}.noop", "run_after": moment})

    assert response.status_code == 201
    assert Task.objects.get().run_after is not None


def test_a_run_after_without_a_time_zone_is_400(admin_api, allowlist):
    response = admin_api.post("/api/tasks/", {"func_path": f"{TASKS}.noop",
                                              "run_after": "2030-01-01T00:00:00"})

    assert assert_json_error(response, 400)["detail"] == {"field": "run_after"}


# --- request bodies Django cannot parse ---


MALFORMED_MULTIPART = [
    ("multipart/form-data", b"count=1"),  # no boundary
    ("multipart/form-data; boundary=", b"--\r\n"),  # an empty boundary
    ("multipart/form-data; boundary=\xff", b"--\xff\r\n"),  # not ASCII
]


@pytest.mark.parametrize(("content_type", "data"), MALFORMED_MULTIPART)
@pytest.mark.parametrize("auth", ["session", "token"])
def test_malformed_multipart_is_a_json_400_naming_the_body(crucible, capacity, auth,
                                                           content_type, data):
    api = session_api(superuser=True) if auth == "session" else None
    client = api.client if api else Client()
    headers = {} if api else token_headers()

    response = client.post("/api/workers/add/", data, content_type=content_type,
                           headers=headers)

    assert assert_json_error(response, 400)["detail"] == {"field": "body"}
    assert not Worker.objects.exists()


def token_headers() -> dict[str, str]:
    from workers.web import tokens

    return {"Authorization": f"Bearer {tokens.create(make_user(superuser=True)).key}"}


@pytest.mark.parametrize(("content_type", "data"), MALFORMED_MULTIPART)
def test_malformed_multipart_is_a_json_400_before_the_csrf_check_too(crucible, capacity,
                                                                     content_type, data):
    """Django's CSRF check reads the form first: its failure is answered the same way."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user(superuser=True))
    client.cookies["csrftoken"] = "a" * 32  # a cookie, and no header: it reads the form

    response = client.post("/api/workers/add/", data, content_type=content_type)

    assert assert_json_error(response, 400)["detail"] == {"field": "body"}
    assert not Worker.objects.exists()


def test_too_many_form_fields_is_a_json_400(admin_api, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 3
    response = admin_api.client.post(
        "/api/workers/drain/", "a=1&b=2&c=3&d=4",
        content_type="application/x-www-form-urlencoded",
    )

    assert assert_json_error(response, 400)["detail"] == {"field": "body"}


# --- paths no route matches ---


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/api/tasks/abc/"),
    ("GET", "/api/tasks/-1/"),
    ("GET", "/api/tasks/1.5/"),
    ("POST", "/api/tasks/x/cancel/"),
    ("POST", "/api/tasks/%00/retry/"),
    ("POST", "/api/workers/one/abort/"),
    ("GET", "/api/workers/"),
    ("DELETE", "/api/nothing/here/"),
    ("GET", "/api/"),
])
def test_a_path_no_route_matches_is_a_json_404(method, path):
    response = raw_client().generic(method, path)

    body = assert_json_error(response, 404)
    assert body["error"] == f"no API endpoint at {path.replace('%00', chr(0))!r}"


def test_a_path_without_its_slash_names_the_one_that_exists():
    response = raw_client().post("/api/tasks", "{}", content_type="application/json")

    body = assert_json_error(response, 404)
    assert body["error"] == "no API endpoint at '/api/tasks': did you mean '/api/tasks/'?"


def test_a_path_no_route_matches_needs_no_login():
    """Nothing is revealed by a 404 of a path; still JSON, for scripts without a token too."""
    assert_json_error(Client().get("/api/tasks/abc/"), 404)


def test_pages_outside_the_api_keep_their_html_404():
    response = raw_client().get("/admin/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_a_host_django_refuses_is_a_json_400_under_the_api_only():
    api = Client(HTTP_HOST="evil.example").get("/api/schema/")
    admin = Client(HTTP_HOST="evil.example").get("/admin/")

    assert assert_json_error(api, 400)["detail"] == {"field": "request"}
    assert admin.status_code == 400
    assert admin["Content-Type"].startswith("text/html")


def test_a_server_error_is_json_under_the_api_and_says_nothing_of_it(admin_api, monkeypatch):
    def broken() -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr("workers.api.views.status.snapshot", broken)
    client = Client(raise_request_exception=False)
    client.force_login(make_user(superuser=True))

    response = client.get("/api/workers/status/")

    body = assert_json_error(response, 500)
    assert "secret" not in body["error"]


# --- integers as JSON Schema counts them: 3.0 is the integer 3 ---


def test_an_integral_float_is_an_integer(admin_api, crucible):
    worker = worker_row(crucible.node_address)

    response = admin_api.post("/api/workers/drain/", {"worker_id": float(worker.pk)})

    assert response.status_code == 200
    assert response.json()["worker_id"] == worker.pk


@pytest.mark.parametrize("value", [301396.0, 1e300])
def test_an_integral_float_id_no_database_holds_is_404_or_400(admin_api, value):
    response = admin_api.post("/api/workers/drain/", {"worker_id": value})

    expected = 404 if value <= 2**63 - 1 else 400
    assert assert_json_error(response, expected)["error"] != ""


def test_a_fraction_is_not_an_integer(admin_api):
    response = admin_api.post("/api/workers/drain/", {"worker_id": 1.5})

    assert assert_json_error(response, 400)["detail"] == {"field": "worker_id"}


def test_integral_floats_in_a_list_of_ids(admin_api, allowlist):
    before = admin_api.post("/api/tasks/", {"func_path": f"{TASKS}.noop"}).json()["id"]

    response = admin_api.post("/api/tasks/", {"func_path": f"{TASKS}.noop",
                                              "depends_on": [float(before)]})

    assert response.status_code == 201
    assert response.json()["depends_on"] == [before]


def test_an_empty_func_path_says_it_is_not_allowed(admin_api, allowlist):
    response = admin_api.post("/api/tasks/", {"func_path": ""})

    assert assert_json_error(response, 400)["detail"] == {"field": "func_path"}


def test_every_error_here_matches_the_document(admin_api, allowlist):
    """The checked client validates each body against the documented response."""
    checked = Api(admin_api.client)
    checked.post("/api/tasks/", {"func_path": f"{TASKS}.noop",
                                 "run_after": "0001-01-01T00:00:00+14:00"})
    checked.post("/api/workers/drain/", {"worker_id": 1.5})

"""The charts' JSON, HTMX section and pages: permission, bad input, what they show."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from workers.charts import sampling
from workers.models import Task
from workers.states import TaskState

pytestmark = pytest.mark.django_db

JSON = "/api/charts/"
SECTION = "/htmx/charts/"
PAGE = "/charts/"


def user_with(*codenames: str, staff: bool = True) -> User:
    user = User.objects.create_user("viewer", password="pw", is_staff=staff)
    perms = Permission.objects.filter(content_type__app_label="workers", codename__in=codenames)
    user.user_permissions.set(perms)
    return user


@pytest.fixture
def viewer(client: Client) -> Client:
    client.force_login(user_with("view_worker"))
    return client


@pytest.fixture
def sampled() -> None:
    Task.objects.create(func_path="tests.testapp.tasks.noop", timeout=60, queue="gpu",
                        state=TaskState.FAILED,
                        finished_at=datetime.now(UTC) - timedelta(minutes=2))
    sampling.sample()


@pytest.mark.parametrize("query", ["?range=month", "?range=HOUR", "?rnage=day"])
def test_a_bad_range_is_a_json_400_naming_the_parameter(viewer: Client, query: str) -> None:
    response = viewer.get(JSON + query)
    assert response.status_code == 400
    body = response.json()
    expected = "rnage" if "rnage" in query else "range"
    assert body["detail"]["field"] == expected
    assert body["error"].startswith(f"{expected}:")


def test_a_bad_range_in_the_section_is_a_plain_400(viewer: Client) -> None:
    response = viewer.get(SECTION + "?range=year")
    assert response.status_code == 400
    assert b"range: must be one of hour, day, week" in response.content


def test_a_too_long_queue_name_is_a_400(viewer: Client) -> None:
    assert viewer.get(JSON + "?queue=" + "q" * 101).status_code == 400
    assert viewer.get(PAGE + "queue/" + "q" * 101 + "/").status_code == 400


def test_the_json_needs_a_staff_user_with_the_view_permission(client: Client) -> None:
    assert client.get(JSON).status_code == 401
    client.force_login(user_with())
    assert client.get(JSON).json()["detail"]["permission"] == "workers.view_worker"
    assert client.get(JSON).status_code == 403


def test_the_html_views_need_the_view_permission(client: Client) -> None:
    assert client.get(PAGE).status_code == 302  # to the admin's login
    client.force_login(user_with())
    assert client.get(PAGE).status_code == 403
    assert client.get(SECTION).status_code == 403


@pytest.mark.parametrize(("name", "buckets", "span"), [("hour", 60, 60), ("day", 96, 900),
                                                       ("week", 168, 3600)])
def test_the_json_gives_every_series_of_a_range(
    viewer: Client, sampled: None, name: str, buckets: int, span: int
) -> None:
    body = viewer.get(JSON, {"range": name}).json()
    assert (body["range"], body["span_seconds"], len(body["buckets"])) == (name, span, buckets)
    for values in (*body["throughput_per_minute"].values(), *body["depth"].values(),
                   body["wait_seconds"], body["failures"]["failed"]):
        assert len(values) == buckets
    assert sum(v or 0 for v in body["failures"]["failed"]) == 1


def test_the_json_of_one_queue(viewer: Client, sampled: None) -> None:
    gpu = viewer.get(JSON, {"range": "hour", "queue": "gpu"}).json()
    other = viewer.get(JSON, {"range": "hour", "queue": "default"}).json()
    assert gpu["queue"] == "gpu"
    assert sum(v or 0 for v in gpu["throughput_per_minute"]["failed"]) == 1
    assert sum(v or 0 for v in other["throughput_per_minute"]["failed"]) == 0
    assert gpu["workers"] == []


def test_the_page_draws_labelled_charts_and_links_each_queue(viewer: Client,
                                                             sampled: None) -> None:
    html = viewer.get(PAGE, {"range": "day"}).content.decode()
    for title in ("Throughput", "Failures", "Queue depth", "Wait before start",
                  "Worker memory (peak)", "Worker CPU (mean)"):
        assert f'<span class="cr-chart-title">{title}</span>' in html
    assert "finished / min" in html and "time (UTC)" in html
    assert 'aria-current="true"' in html and ">Last day</a>" in html
    assert 'href="/charts/queue/gpu/"' in html


def test_the_queue_page_shows_that_queues_charts(viewer: Client, sampled: None) -> None:
    html = viewer.get(PAGE + "queue/gpu/").content.decode()
    assert "Over time: queue gpu" in html
    assert "1 failed in the range" in html
    assert "Worker memory" not in html


def test_a_queue_named_with_a_slash_has_its_page(viewer: Client) -> None:
    Task.objects.create(func_path="tests.testapp.tasks.noop", timeout=60, queue="gpu/big",
                        state=TaskState.SUCCEEDED,
                        finished_at=datetime.now(UTC) - timedelta(minutes=2))
    sampling.sample()
    html = viewer.get(PAGE).content.decode()
    assert 'href="/charts/queue/gpu/big/"' in html
    assert "Over time: queue gpu/big" in viewer.get(PAGE + "queue/gpu/big/").content.decode()

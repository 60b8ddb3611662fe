"""Schemathesis against the OpenAPI document the server serves at /api/schema/: generated
requests, valid and invalid, never get a 5xx, and every answer matches the document.

Every operation is exercised, POST /api/workers/add/ included, but no process is started:
WORKER_MAX_COUNT is 0, so admission refuses every add (force never passes the cap), and the
launcher's process start is replaced by one that fails the test should it ever be reached.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from django.test import override_settings
from hypothesis import HealthCheck, reject, settings
from werkzeug.test import EnvironBuilder

from workers.models import Worker
from workers.pool import launcher
from workers.spec import signature
from workers.web import tokens

from ..helpers import TASKS
from .conftest import NO_STATIC_ROOT, task_row

pytestmark = [pytest.mark.django_db, NO_STATIC_ROOT]

EXAMPLES = 50  # per operation: a bounded run, about 15 s for the whole document
ALLOWED = [f"{TASKS}.noop", f"{TASKS}.add", f"{TASKS}.record"]


def never_start(*args: object) -> int:
    raise AssertionError("a generated request tried to start a worker process")


def _load() -> Any:
    """The document as the server serves it, with this module's allow-list (the submit body
    names the allowed tasks). Loaded once, at collection: no database is needed for it."""
    with override_settings(CRUCIBLE_TASK_ALLOWLIST=ALLOWED):
        return schemathesis.openapi.from_wsgi("/api/schema/", WSGIHandler())


schema = _load()


@pytest.fixture(autouse=True)
def server(settings: Any, crucible: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The application as served, but keeping the test's connection (and its transaction)
    open between requests, as Django's test client does; no worker can start."""
    settings.CRUCIBLE = dataclasses.replace(settings.CRUCIBLE, max_count=0)
    settings.CRUCIBLE_TASK_ALLOWLIST = ALLOWED
    monkeypatch.setattr(launcher, "_start_process", never_start)
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def bearer(db: None) -> dict[str, str]:
    """A superuser's token: every permission, so refusals come from the input alone."""
    admin = User.objects.create_superuser("fuzzer", password="pw")
    return {"Authorization": f"Bearer {tokens.create(admin).key}"}


@pytest.fixture
def predecessor(db: None) -> int:
    return task_row().pk


FORM = "application/x-www-form-urlencoded"


def form_sent_as_drawn(case: Any) -> None:
    """The WSGI transport (werkzeug) leaves out a form field valued None, an empty list or
    an object: a case that breaks the document only by such a field reaches the server
    without it, a valid request. Those are not the requests they claim to be, so they are not drawn.
    (Seen once: ``{"queue": ..., <extra>: None}`` paused the queue, reported as "accepted
    though it violates additionalProperties".)"""
    body = case.body
    if case.media_type != FORM or not isinstance(body, dict):
        return
    try:
        environ = EnvironBuilder(method="POST", data=body, content_type=FORM).get_environ()
    except ValueError:  # text UTF-8 cannot carry: the transport meets it as it always did
        return
    sent = environ["wsgi.input"].read().decode("utf-8", "surrogateescape")
    if {name for name, _ in parse_qsl(sent, keep_blank_values=True)} != set(body):
        reject()


def existing_predecessors(case: Any, task_id: int) -> None:
    """Which task ids exist is data, not schema: a valid submit depends on one that does (an
    unknown one is a 400 naming depends_on, as docs/api.md says)."""
    body = case.body
    valid = case.meta is not None and case.meta.generation.mode.is_positive
    if valid and isinstance(body, dict) and isinstance(body.get("depends_on"), list):
        body["depends_on"] = [task_id for _ in body["depends_on"]]


def fitting_call(case: Any) -> None:
    """Which arguments a function takes is its signature, not the document's: a valid submit
    whose generated args and kwargs do not fit gets one required argument per parameter."""
    body = case.body
    valid = case.meta is not None and case.meta.generation.mode.is_positive
    if not (valid and isinstance(body, dict)):
        return
    calls = body.get("tasks") if case.path == "/api/tasks/bulk/" else [body]
    for call in calls if isinstance(calls, list) else []:
        if isinstance(call, dict) and isinstance(call.get("func_path"), str):
            _fit_submit(call)


def _fit_submit(body: dict[str, Any]) -> None:
    _fit(body, body["func_path"])
    # What the nodes' budgets hold is data too: a valid submit larger than every node is
    # forced (else a 400 naming both figures), and its limit is not below what it declares.
    body["force"] = True
    limit, declared = body.get("memory_limit_mb"), body.get("memory_mb")
    if isinstance(limit, int | float) and isinstance(declared, int | float):  # 5.0 is whole
        body["memory_limit_mb"] = max(limit, declared)


def fitting_run(case: Any) -> None:
    """A valid run document names its tasks uniquely, depends only on tasks it names before
    (no cycle), calls each function as its signature takes, fits the nodes' budgets, and
    waits for lock keys a run generated earlier may hold: data, not the document's schema."""
    body = case.body
    valid = case.meta is not None and case.meta.generation.mode.is_positive
    if not (valid and case.path == "/api/runs/" and isinstance(body, dict)
            and isinstance(body.get("tasks"), list)):
        return
    body["wait_for_locks"] = True
    body["tasks"] = body["tasks"] or [{"name": "t0", "task": ALLOWED[0]}]  # at least one
    for index, task in enumerate(body["tasks"]):
        task["name"] = f"t{index}"
        if isinstance(task.get("depends_on"), list):
            task["depends_on"] = [f"t{before}" for before in range(index)][
                :len(task["depends_on"])]
        _fit(task, task["task"])
        for budget in ("memory_mb", "memory_limit_mb", "cpus"):  # what the nodes have is data
            task.pop(budget, None)


def _fit(body: dict[str, Any], func_path: str) -> None:
    expected = signature(func_path)
    try:
        expected.bind(*(body.get("args") or []), **(body.get("kwargs") or {}))
    except TypeError:
        required = [p for p in expected.parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
                                                           p.POSITIONAL_OR_KEYWORD)]
        body["args"], body["kwargs"] = ["x"] * len(required), None


@schema.parametrize()  # type: ignore[untyped-decorator]  # schemathesis types it Callable
# An operation's examples share its fixtures (token, rows, settings) on purpose. No example
# database: every run draws afresh, and a failure prints how to reproduce it.
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_the_server_keeps_the_documents_promises(case: Any, bearer: dict[str, str],
                                                 predecessor: int) -> None:
    form_sent_as_drawn(case)
    existing_predecessors(case, predecessor)
    fitting_call(case)
    fitting_run(case)

    case.call_and_validate(headers=bearer)

    assert not Worker.objects.exists(), "no worker was ever started or reserved"

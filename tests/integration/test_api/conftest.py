"""Fixtures of the JSON API tests: users with real permissions, tokens, and a client that
checks every response against the OpenAPI document."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from tests.conftest import wait_for, worker_env
from workers.api.schema import document
from workers.models import Task, Worker
from workers.pool import admission
from workers.states import TaskState, WorkerState
from workers.web import tokens

from ..helpers import TASKS
from .openapi import Checker, Mismatch, response_schema

# WhiteNoise warns once per process that STATIC_ROOT (made by collectstatic) is missing.
NO_STATIC_ROOT = pytest.mark.filterwarnings("ignore:No directory at:UserWarning")
ALLOWED = [f"{TASKS}.record", f"{TASKS}.add", f"{TASKS}.noop", f"{TASKS}.NOT_A_FUNCTION"]


class Api:
    """The test client, plus: every answer is JSON and matches its documented response."""

    def __init__(self, client: Client, headers: dict[str, str] | None = None) -> None:
        self.client = client
        self.headers = headers or {}
        self.document = document()

    def get(self, path: str, **params: Any) -> Any:
        return self.check("GET", path, self.client.get(path, params, headers=self.headers))

    def post(self, path: str, body: Any = None, *, raw: str | None = None,
             content_type: str = "application/json", headers: dict[str, str] | None = None
             ) -> Any:
        data = raw if raw is not None else ("" if body is None else json.dumps(body))
        response = self.client.post(path, data, content_type=content_type,
                                    headers={**self.headers, **(headers or {})})
        return self.check("POST", path.split("?", maxsplit=1)[0], response)

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return self.get(path) if method == "GET" else self.post(path, body)

    def check(self, method: str, path: str, response: Any) -> Any:
        assert response["Content-Type"] == "application/json", response.content[:200]
        body = response.json()
        if response.status_code == 405:
            assert set(body) == {"error", "detail"} and "Allow" in response
            return response
        schema = response_schema(self.document, method, path, response.status_code)
        try:
            Checker(self.document).validate(body, schema)
        except Mismatch as exc:
            raise AssertionError(f"{method} {path} -> {response.status_code}: {exc}") from exc
        return response


def grant(user: User, *perms: str) -> User:
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return User.objects.get(pk=user.pk)  # a fresh object: no stale permission cache


_counter = iter(range(1, 1_000_000))


def make_user(*perms: str, staff: bool = True, active: bool = True,
              superuser: bool = False) -> User:
    user = User.objects.create_user(
        f"user{next(_counter)}", password="pw", is_staff=staff, is_active=active,
        is_superuser=superuser,
    )
    return grant(user, *perms)


@pytest.fixture
def allowlist(settings: Any) -> list[str]:
    settings.CRUCIBLE_TASK_ALLOWLIST = ALLOWED
    return ALLOWED


@pytest.fixture
def capacity(settings: Any, crucible: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Admission bound by WORKER_MAX_COUNT only: memory and cores never the tighter limit."""
    monkeypatch.setattr(admission, "_physical_cores", lambda: 64)

    def set_max(count: int) -> None:
        settings.CRUCIBLE = dataclasses.replace(
            settings.CRUCIBLE, max_count=count, memory_per_task_mb=1, memory_guard_mb=0
        )

    set_max(1)
    return set_max


def session_api(*perms: str, **flags: Any) -> Api:
    client = Client()
    client.force_login(make_user(*perms, **flags))
    return Api(client)


def token_api(*perms: str, **flags: Any) -> Api:
    made = tokens.create(make_user(*perms, **flags))
    return Api(Client(), {"Authorization": f"Bearer {made.key}"})


@pytest.fixture
def admin_api(db: None) -> Api:
    return session_api(superuser=True)


def worker_row(node: str, state: str = WorkerState.RUNNING, **fields: Any) -> Worker:
    return Worker.objects.create(node=node, state=state, **fields)


def task_row(state: str = TaskState.QUEUED, **fields: Any) -> Task:
    defaults: dict[str, Any] = {"func_path": f"{TASKS}.record", "args": ["x"], "timeout": 60.0}
    return Task.objects.create(state=state, **{**defaults, **fields})


def alive(pid: int) -> bool:
    """Running, not just a zombie waiting for init (which may reap slowly) to collect it."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_processes(pids: Iterable[int | None]) -> None:
    """SIGKILL spawned workers with their process groups and children; wait until gone."""
    procs: list[psutil.Process] = []
    for pid in filter(None, pids):
        try:
            proc = psutil.Process(pid)
            procs += [proc, *proc.children(recursive=True)]
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
        except (psutil.NoSuchProcess, ProcessLookupError):
            continue
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    wait_for(lambda: not any(alive(proc.pid) for proc in procs), timeout=10)


@pytest.fixture
def spawning(crucible: Any, runtime_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Workers the launcher starts use the test database; none outlives the test."""
    for name, value in worker_env(runtime_dir).items():
        monkeypatch.setenv(name, value)  # what the web server's environment would hold
    yield
    stop_processes(Worker.objects.filter(spawned=True).values_list("pid", flat=True))

"""Fixtures shared by every tier: settings for fast workers, and real worker processes."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, every: float = 0.02) -> Any:
    """Poll until ``predicate`` returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    # Short on purpose: a Unix socket path must stay under ~100 characters.
    path = Path(tempfile.mkdtemp(prefix="cr-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


FAST = {
    "heartbeat_interval": 1.0,
    "poll_interval": 0.5,
    "tick_interval": 0.3,
    "startup_timeout": 15.0,
    "retry_backoff": 0.2,
}


@pytest.fixture
def crucible(settings: Any, runtime_dir: Path) -> Any:
    """Fast timings for this test process and the workers it starts."""
    settings.CRUCIBLE = dataclasses.replace(
        settings.CRUCIBLE,
        log_dir=runtime_dir / "logs",
        doorbell_dir=runtime_dir / "bell",
        work_dir=runtime_dir / "work",
        **FAST,
    )
    return settings.CRUCIBLE


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    host, port = db.get("HOST") or "127.0.0.1", db.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{db['NAME']}"


def worker_env(runtime_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=database_url(),
        WORKER_LOG_DIR=str(runtime_dir / "logs"),
        WORKER_DOORBELL_DIR=str(runtime_dir / "bell"),
        WORKER_WORK_DIR=str(runtime_dir / "work"),
        WORKER_HEARTBEAT_INTERVAL=str(FAST["heartbeat_interval"]),
        WORKER_POLL_INTERVAL=str(FAST["poll_interval"]),
        WORKER_TICK_INTERVAL=str(FAST["tick_interval"]),
        WORKER_STARTUP_TIMEOUT=str(FAST["startup_timeout"]),
        WORKER_RETRY_BACKOFF=str(FAST["retry_backoff"]),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Workers:
    """Starts real ``manage.py runworker`` processes and cleans every one of them up."""

    def __init__(self, runtime_dir: Path) -> None:
        self.runtime_dir = runtime_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.runtime_dir / f"proc-{len(self.procs)}.out").open("wb")
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "runworker", *args],
            cwd=ROOT,
            env=env or worker_env(self.runtime_dir),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def wait_all(self, timeout: float = 60.0) -> list[int]:
        return [proc.wait(timeout=timeout) for proc in self.procs]

    def output(self, index: int) -> str:
        return (self.runtime_dir / f"proc-{index}.out").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def workers(request: pytest.FixtureRequest, crucible: Any, runtime_dir: Path) -> Iterator[Workers]:
    pool = Workers(runtime_dir)
    yield pool
    pool.stop_all()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for index in range(len(pool.procs)):
            sys.stderr.write(f"--- worker process {index} ---\n{pool.output(index)[-4000:]}\n")
        for log in sorted((runtime_dir / "logs").glob("*.log")):
            sys.stderr.write(f"--- {log.name} ---\n{log.read_text(errors='replace')[-4000:]}\n")

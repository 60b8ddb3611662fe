"""What an idle pool costs: statements per second from 16 idle workers on PostgreSQL.

    .venv/bin/python bench/idle.py [--workers 16] [--seconds 60] [--settle 10] [--json F]

Starts real `manage.py runworker` processes against a throwaway PostgreSQL database, each
connecting through a TCP proxy (tests/tcp_proxy.py) that counts the PostgreSQL messages
they send, the LISTEN connections' included. Once every worker runs and has settled, the
counts are reset and read again after the measured window. Statements are simple queries
(Q) plus executes of the extended protocol (E). Target: workers / WORKER_POLL_INTERVAL + 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.core import ROOT, emit
from bench.core import _env as worker_env
from tests.tcp_proxy import TcpProxy

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
DB_NAME = "bench_crucible_idle"  # its own, so that it never meets bench/core.py's
DEFAULT_POLL_INTERVAL = 2.0


def _url(port: int, dbname: str = DB_NAME) -> str:
    return f"postgres://{PG_USER}@{PG_HOST}:{port}/{dbname}"


def _env(db_url: str, workdir: Path, poll_interval: float | None) -> dict[str, str]:
    env = worker_env(db_url, workdir)  # bench/core.py's: default settings, quiet logs
    env["WORKER_WORK_DIR"] = str(workdir / "work")
    if poll_interval is not None:
        env["WORKER_POLL_INTERVAL"] = str(poll_interval)
    return env


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(_url(PG_PORT, "postgres"), autocommit=True) as conn:
        conn.execute(sql)


def _running(dbname: str = DB_NAME) -> int:
    import psycopg

    with psycopg.connect(_url(PG_PORT, dbname)) as conn:
        row = conn.execute("SELECT count(*) FROM workers_worker WHERE state = 'RUNNING'")
        return int(row.fetchone()[0])  # type: ignore[index]


@contextlib.contextmanager
def database(workdir: Path) -> Iterator[None]:
    _admin(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    _admin(f"CREATE DATABASE {DB_NAME}")
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT,
                       env=_env(_url(PG_PORT), workdir, None), check=True,
                       stdout=subprocess.DEVNULL, timeout=300)
        yield
    finally:
        _admin(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")


@contextlib.contextmanager
def idle_workers(count: int, env: dict[str, str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [
        subprocess.Popen([sys.executable, "manage.py", "runworker"], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
        for _ in range(count)
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _wait_running(count: int, procs: list[subprocess.Popen[bytes]], timeout: float) -> float:
    started = time.monotonic()
    while _running() < count:
        if any(proc.poll() is not None for proc in procs):
            raise SystemExit("a worker exited before the pool was up")
        if time.monotonic() - started > timeout:
            raise SystemExit(f"only {_running()} of {count} workers running after {timeout} s")
        time.sleep(0.2)
    return time.monotonic() - started


def measure(workers: int, seconds: float, settle: float,
            poll_interval: float | None) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="crb-idle-"))
    try:
        with database(workdir), TcpProxy(PG_HOST, PG_PORT) as proxy:
            env = _env(_url(proxy.port), workdir, poll_interval)
            with idle_workers(workers, env) as procs:
                up = _wait_running(workers, procs, timeout=180)
                time.sleep(settle)  # start-up statements are not what idling costs
                proxy.reset_counts()
                time.sleep(seconds)
                counts = proxy.counts()
                alive = sum(proc.poll() is None for proc in procs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    poll = poll_interval or DEFAULT_POLL_INTERVAL
    statements = counts.get("Q", 0) + counts.get("E", 0)
    per_second = statements / seconds
    target = workers / poll + 2
    return {
        "database": "postgresql",
        "workers": workers,
        "workers_alive_at_end": alive,
        "poll_interval": poll,
        "seconds_to_all_running": round(up, 1),
        "settle_seconds": settle,
        "window_seconds": seconds,
        "messages": dict(sorted(counts.items())),
        "statements": statements,
        "statements_per_second": round(per_second, 2),
        "target_per_second": target,
        "met": per_second <= target,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured window")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="seconds to wait once every worker runs, before measuring")
    parser.add_argument("--poll-interval", type=float, default=None,
                        help="WORKER_POLL_INTERVAL for the workers (default: theirs, 2.0)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    emit(measure(args.workers, args.seconds, args.settle, args.poll_interval), args.json)


if __name__ == "__main__":
    main()

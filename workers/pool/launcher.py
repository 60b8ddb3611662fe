"""Start, drain and abort worker processes on this machine."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import zlib
from pathlib import Path

from django.conf import settings as django_settings
from django.db import connection, transaction

from .. import conf, queue
from ..exceptions import IllegalTransition, LaunchFailed, WorkerNotFound
from ..models import Task, Worker
from ..queue.clock import Now
from ..states import ACTIVE_WORKER_STATES, TaskState, WorkerState
from . import admission, lifecycle, processes

logger = logging.getLogger(__name__)

# The shell backgrounds the worker and exits at once, so the worker is re-parented to init
# and the process that asked (a web server, a CLI) is never left with a zombie to reap.
_DETACH = 'exec 0</dev/null; "$@" >>"$CRUCIBLE_SPAWN_LOG" 2>&1 & echo $!'


def add(count: int = 1, *, force: bool = False, queues: list[str] | None = None) -> list[Worker]:
    """Admit and start ``count`` workers: beyond capacity only when forced, and never beyond
    WORKER_MAX_COUNT.

    The decision and the STARTING rows are one transaction under a per-node lock, so two
    requests at once cannot both take the last place; the processes start after it commits.
    """
    return _add(count, force=force, queues=queues, fit=False)[0]


def add_what_fits(count: int, *, force: bool = False,
                  queues: list[str] | None = None) -> tuple[list[Worker], str]:
    """Start as many of ``count`` workers as are admitted now (refused only when none is);
    the workers, and the limit that stopped the others as admission words it."""
    return _add(count, force=force, queues=queues, fit=True)


def _add(count: int, *, force: bool, queues: list[str] | None,
         fit: bool) -> tuple[list[Worker], str]:
    names = queues or [conf.get().queue_name]
    with transaction.atomic():
        _lock_admission(conf.get().node_address)
        room = admission.check()
        if fit:
            count = max(fitting(count, force=force, room=room), 1)
        admission.admit(room, count, force=force)
        reserved = [_reserve(names) for _ in range(count)]
    return _launch_all(reserved, names), _limit(room, force=force)


def _limit(room: admission.Admission, *, force: bool) -> str:
    if force or room.admissible >= room.limits["max_count"]:
        return (f"WORKER_MAX_COUNT is {room.limits['max_count']} (force never goes past it); "
                f"{room.active} were active.")
    return room.reason


def fitting(count: int, *, force: bool = False, room: admission.Admission | None = None) -> int:
    """How many of ``count`` more workers admission lets start now (0 to ``count``)."""
    room = room or admission.check()
    limit = room.limits["max_count"] if force else min(room.admissible, room.limits["max_count"])
    return max(0, min(count, limit - room.active))


def _lock_admission(node: str) -> None:
    """Hold this node's admission lock until the transaction ends.

    SQLite's IMMEDIATE transactions already hold the database's write lock; PostgreSQL
    takes a transaction-scoped advisory lock named after the node.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_lock_key(node)])


def _lock_key(node: str) -> int:
    return zlib.crc32(f"crucible.admission:{node}".encode())


def _reserve(queues: list[str]) -> tuple[Worker, str]:
    """A STARTING row with the hash of a one-time launch token; the token itself."""
    settings = conf.get()
    token, token_hash = lifecycle.new_token()
    worker = Worker.objects.create(
        state=WorkerState.STARTING,
        node=settings.node_address,
        labels=settings.node_labels,
        queues=queues,
        spawned=True,
        launch_token_hash=token_hash,
    )
    return worker, token


def _launch_all(reserved: list[tuple[Worker, str]], queues: list[str]) -> list[Worker]:
    """Start a process for each reserved row; after a failure, fail the rows not started."""
    started = []
    for index, (worker, token) in enumerate(reserved):
        try:
            started.append(_launch(worker, token, queues))
        except LaunchFailed:
            for rest, _ in reserved[index + 1 :]:
                lifecycle.finish(rest.pk, WorkerState.FAILED,
                                 reason=f"Not started: worker {worker.pk} could not start")
            raise
    return started


def _launch(worker: Worker, token: str, queues: list[str]) -> Worker:
    """Start ``manage.py runworker`` for a reserved row."""
    try:
        pid = _start_process(worker.pk, token, queues)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        lifecycle.finish(worker.pk, WorkerState.FAILED, reason=f"Could not start: {exc}")
        raise LaunchFailed(f"could not start worker {worker.pk}: {exc}") from exc
    Worker.objects.filter(pk=worker.pk).update(pid=pid)
    worker.refresh_from_db()
    logger.info("spawned worker %s as pid %s", worker.pk, pid,
                extra={"worker": worker.pk, "pid": pid})
    return worker


def _command(worker_id: int, queues: list[str]) -> list[str]:
    manage = Path(django_settings.BASE_DIR) / "manage.py"
    command = [sys.executable, str(manage), "runworker", "--worker-id", str(worker_id)]
    for name in queues:
        command += ["--queue", name]
    return command


def _start_process(worker_id: int, token: str, queues: list[str]) -> int:
    settings = conf.get()
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "WORKER_LAUNCH_TOKEN": token,  # in the environment, never on the command line
        "CRUCIBLE_SPAWN_LOG": str(settings.log_dir / f"worker_{worker_id}.out"),
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings"),
    }
    shell = subprocess.run(
        ["/bin/sh", "-c", _DETACH, "crucible-spawn", *_command(worker_id, queues)],
        env=env,
        cwd=django_settings.BASE_DIR,
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
        start_new_session=True,
    )
    return int(shell.stdout.strip())


def _pick_for_drain() -> Worker | None:
    running = Worker.objects.filter(state=WorkerState.RUNNING)
    busy = Task.objects.filter(state=TaskState.RUNNING).values("worker_id")
    return running.exclude(pk__in=busy).first() or running.first()


def drain(worker_id: int | None = None) -> Worker:
    """Let a worker finish its task and stop; without an id, prefer an idle one."""
    worker = lifecycle.get(worker_id) if worker_id is not None else _pick_for_drain()
    if worker is None:
        raise WorkerNotFound("no running worker to drain")
    updated = Worker.objects.filter(pk=worker.pk, state__in=ACTIVE_WORKER_STATES).update(
        drain_requested_at=Now()
    )
    if updated:
        transaction.on_commit(lambda: queue.wake(worker))
    return lifecycle.get(worker.pk)


def undrain(worker_id: int) -> Worker:
    """Cancel an operator's drain: the worker goes back to RUNNING and claims again."""
    if not lifecycle.cancel_drain(worker_id):
        raise IllegalTransition(_not_undrainable(lifecycle.get(worker_id)))
    worker = lifecycle.get(worker_id)
    transaction.on_commit(lambda: queue.wake(worker))
    return worker


def _not_undrainable(worker: Worker) -> str:
    if not worker.is_active:
        return f"worker {worker.pk} is already {worker.state}: there is no drain to cancel"
    if worker.abort_requested_at is not None:
        return f"worker {worker.pk} is being aborted: its drain cannot be cancelled"
    if worker.state == WorkerState.DRAINING:
        return (f"worker {worker.pk} is draining after a signal (SIGTERM), not an operator's "
                "drain: it cannot be cancelled")
    return f"worker {worker.pk} is not draining"


def abort(worker_id: int) -> Worker:
    """Stop a worker now; its task is requeued (or failed when out of attempts).

    The worker is asked first; the monitor kills its process group if it has not gone
    after ABORT_GRACE, and only after checking the PID still belongs to that worker.
    """
    worker = lifecycle.get(worker_id)
    if worker.is_active:
        Worker.objects.filter(pk=worker.pk).update(abort_requested_at=Now())
        transaction.on_commit(lambda: queue.wake(worker))
    return lifecycle.get(worker.pk)


def kill(worker: Worker) -> bool:
    """SIGKILL a local worker's process group, verified against PID reuse."""
    if worker.node != conf.get().node_address:
        return False
    return processes.signal_worker(worker.pid, worker.process_started_at, signal.SIGKILL)

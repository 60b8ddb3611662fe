"""Start, drain and abort worker processes on this machine."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from django.conf import settings as django_settings
from django.db import transaction
from django.utils import timezone

from . import admission, conf, lifecycle, processes, queue
from .exceptions import AdmissionRefused, LaunchFailed, WorkerNotFound
from .models import Task, Worker
from .states import ACTIVE_WORKER_STATES, TaskState, WorkerState

logger = logging.getLogger(__name__)

# The shell backgrounds the worker and exits at once, so the worker is re-parented to init
# and the process that asked (a web server, a CLI) is never left with a zombie to reap.
_DETACH = 'exec 0</dev/null; "$@" >>"$CRUCIBLE_SPAWN_LOG" 2>&1 & echo $!'


def add(count: int = 1, *, force: bool = False, queues: list[str] | None = None) -> list[Worker]:
    """Admit and start ``count`` workers; refuse beyond capacity unless forced."""
    room = admission.check()
    if not force and room.active + count > room.admissible:
        raise AdmissionRefused(f"Cannot add {count}: {room.reason}")
    return [spawn(queues or [conf.get().queue_name]) for _ in range(count)]


def spawn(queues: list[str]) -> Worker:
    """Create a STARTING row with a one-time token, then start ``manage.py runworker``."""
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
    try:
        pid = _start_process(worker.pk, token, queues)
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        lifecycle.finish(worker.pk, WorkerState.FAILED, reason=f"Could not start: {exc}")
        raise LaunchFailed(f"could not start worker {worker.pk}: {exc}") from exc
    Worker.objects.filter(pk=worker.pk).update(pid=pid)
    worker.refresh_from_db()
    logger.info("spawned worker %s as pid %s", worker.pk, pid)
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
    now = timezone.now()
    updated = Worker.objects.filter(pk=worker.pk, state__in=ACTIVE_WORKER_STATES).update(
        drain_requested_at=now
    )
    if updated:
        transaction.on_commit(lambda: queue.wake(worker))
    return lifecycle.get(worker.pk)


def abort(worker_id: int) -> Worker:
    """Stop a worker now; its task is requeued (or failed when out of attempts).

    The worker is asked first; the monitor kills its process group if it has not gone
    after ABORT_GRACE, and only after checking the PID still belongs to that worker.
    """
    worker = lifecycle.get(worker_id)
    if worker.is_active:
        Worker.objects.filter(pk=worker.pk).update(abort_requested_at=timezone.now())
        transaction.on_commit(lambda: queue.wake(worker))
    return lifecycle.get(worker.pk)


def kill(worker: Worker) -> bool:
    """SIGKILL a local worker's process group, verified against PID reuse."""
    if worker.node != conf.get().node_address:
        return False
    return processes.signal_worker(worker.pid, worker.process_started_at, signal.SIGKILL)

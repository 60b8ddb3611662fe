"""Worker rows: registration, the launch-token handshake, heartbeats, and the end of a worker."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from . import queue
from .claim import ClaimedTask
from .exceptions import LaunchRefused, WorkerNotFound
from .models import Heartbeat, Worker, WorkerQuerySet
from .states import WORKER_TRANSITIONS, WorkerState, sources


def move(queryset: WorkerQuerySet, target: str, **fields: Any) -> int:
    """The one transition function for workers: only legal moves match a row."""
    allowed = sources(WORKER_TRANSITIONS, target)
    return queryset.filter(state__in=allowed).update(state=target, **fields)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


@dataclass(frozen=True, slots=True)
class Identity:
    """What a worker process says about itself when it starts."""

    node: str
    labels: dict[str, str]
    queues: list[str]
    pid: int
    process_started_at: float
    max_tasks: int | None = None
    host_id: str = ""

    def fields(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def register(identity: Identity) -> Worker:
    """A worker started by hand makes its own row."""
    return Worker.objects.create(state=WorkerState.STARTING, **identity.fields())


def handshake(worker_id: int, token: str, identity: Identity) -> Worker:
    """A spawned worker proves its one-time launch token; a wrong one fails the row."""
    worker = Worker.objects.filter(pk=worker_id).first()
    if worker is None:
        raise LaunchRefused(f"worker {worker_id} does not exist")
    if worker.state != WorkerState.STARTING:
        raise LaunchRefused(f"worker {worker_id} is {worker.state}, not STARTING")
    if not token or not hmac.compare_digest(hash_token(token), worker.launch_token_hash):
        move(Worker.objects.filter(pk=worker_id), WorkerState.FAILED, stopped_at=timezone.now(),
             failure_reason="Launch token rejected: the process could not prove it was started "
                            "by Crucible.", pid=identity.pid)
        raise LaunchRefused(f"launch token rejected for worker {worker_id}")
    Worker.objects.filter(pk=worker_id).update(
        launch_token_hash="",  # one-time: a second process cannot reuse it
        **identity.fields(),
    )
    worker.refresh_from_db()
    return worker


def mark_running(worker_id: int, doorbell: str) -> None:
    now = timezone.now()
    moved = move(Worker.objects.filter(pk=worker_id), WorkerState.RUNNING, started_at=now,
                 last_heartbeat=now, doorbell=doorbell)
    if not moved:
        raise LaunchRefused(f"worker {worker_id} can no longer start (aborted or failed)")


@dataclass(frozen=True, slots=True)
class Sample:
    rss_bytes: int
    cpu_percent: float
    task_id: int | None = None
    task_rss_bytes: int | None = None
    task_cpu_percent: float | None = None


@dataclass(frozen=True, slots=True)
class Control:
    """What the operator asked of a worker, read at each heartbeat or wake-up."""

    drain: bool
    abort: bool
    lease_ok: bool = True
    cancel: bool = False


def control(worker_id: int, running: ClaimedTask | None) -> Control:
    row = Worker.objects.filter(pk=worker_id).values(
        "state", "drain_requested_at", "abort_requested_at"
    ).first()
    if row is None or row["state"] in (WorkerState.DEAD, WorkerState.FAILED):
        return Control(drain=True, abort=True, lease_ok=False)
    cancel = running is not None and queue.cancel_requested(running)
    return Control(
        drain=row["drain_requested_at"] is not None or row["state"] == WorkerState.DRAINING,
        abort=row["abort_requested_at"] is not None,
        cancel=cancel,
    )


def heartbeat(worker_id: int, sample: Sample, running: ClaimedTask | None,
              counts: tuple[int, int]) -> Control:
    """Record a resource sample, renew the running task's lease, return the operator's asks."""
    now = timezone.now()
    with transaction.atomic():
        Heartbeat.objects.create(
            worker_id=worker_id,
            at=now,
            rss_bytes=sample.rss_bytes,
            cpu_percent=sample.cpu_percent,
            task_id=sample.task_id,
            task_rss_bytes=sample.task_rss_bytes,
            task_cpu_percent=sample.task_cpu_percent,
        )
        Worker.objects.filter(pk=worker_id).update(
            last_heartbeat=now,
            rss_bytes=sample.rss_bytes,
            cpu_percent=sample.cpu_percent,
            task_rss_bytes=sample.task_rss_bytes,
            task_cpu_percent=sample.task_cpu_percent,
            tasks_succeeded=counts[0],
            tasks_failed=counts[1],
        )
        lease_ok = running is None or queue.renew(running)
    found = control(worker_id, running)
    return Control(found.drain, found.abort, lease_ok and found.lease_ok, found.cancel)


def start_draining(worker_id: int) -> None:
    move(Worker.objects.filter(pk=worker_id), WorkerState.DRAINING)


def finish(worker_id: int, state: str, reason: str = "", exit_code: int | None = None,
           log_tail: str = "") -> None:
    """The worker's last word about itself: DEAD (ended as asked) or FAILED."""
    move(
        Worker.objects.filter(pk=worker_id),
        state,
        stopped_at=timezone.now(),
        failure_reason=reason,
        exit_code=exit_code,
        log_tail=log_tail[-queue.TAIL_CHARS:],
        doorbell="",
    )


def get(worker_id: int) -> Worker:
    try:
        return Worker.objects.get(pk=worker_id)
    except Worker.DoesNotExist:
        raise WorkerNotFound(f"no worker with id {worker_id}") from None

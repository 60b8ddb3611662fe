"""Worker rows: registration, the launch-token handshake, heartbeats, and the end of a worker."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

from .. import queue, storable
from ..exceptions import LaunchRefused, WorkerNotFound
from ..models import Heartbeat, Worker
from ..queue.clock import Now, sql_now
from ..queue.hotpath import ClaimedTask
from ..states import WorkerState, move
from . import budget


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
        move(Worker.objects.filter(pk=worker_id), WorkerState.FAILED, stopped_at=Now(),
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
    starting = Worker.objects.filter(pk=worker_id, state=WorkerState.STARTING)
    moved = move(starting, WorkerState.RUNNING, started_at=Now(),
                 last_heartbeat=Now(), doorbell=doorbell)
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
    shown_draining: bool = False  # the worker's row says DRAINING


ENDED = (WorkerState.DEAD.value, WorkerState.FAILED.value)


def _control(state: str | None, drain: bool, abort: bool) -> Control:
    if state is None or state in ENDED:
        return Control(drain=True, abort=True, lease_ok=False)
    draining = state == WorkerState.DRAINING
    return Control(drain=drain or draining, abort=abort, shown_draining=draining)


def control(worker_id: int, running: ClaimedTask | None) -> Control:
    """The operator's asks, and whether the running attempt is still ours and not cancelled."""
    row = Worker.objects.filter(pk=worker_id).values(
        "state", "drain_requested_at", "abort_requested_at"
    ).first()
    if row is None:
        return _control(None, True, True)
    found = _control(row["state"], row["drain_requested_at"] is not None,
                     row["abort_requested_at"] is not None)
    if running is None or not found.lease_ok:
        return found
    ours, cancel = queue.attempt_status(running)
    return Control(found.drain, found.abort, lease_ok=ours, cancel=cancel,
                   shown_draining=found.shown_draining)


@functools.cache
def _heartbeat_sql(vendor: str) -> tuple[str, str]:
    """The sample's INSERT and the worker's UPDATE (returning the operator's asks)."""
    samples = connection.ops.quote_name(Heartbeat._meta.db_table)
    workers = connection.ops.quote_name(Worker._meta.db_table)
    now = sql_now(vendor)
    insert = (
        f"INSERT INTO {samples} (worker_id, at, rss_bytes, cpu_percent, task_id,"
        f" task_rss_bytes, task_cpu_percent) VALUES (%s, {now}, %s, %s, %s, %s, %s)"
    )
    update = (
        f"UPDATE {workers} SET last_heartbeat = {now}, rss_bytes = %s, cpu_percent = %s,"
        " task_rss_bytes = %s, task_cpu_percent = %s, tasks_succeeded = %s, tasks_failed = %s"
        # Plain columns: SQLite 3.40 evaluated "drain_requested_at IS NULL" wrongly in a
        # RETURNING clause of this table (false for a NULL).
        " WHERE id = %s RETURNING state, drain_requested_at, abort_requested_at"
    )
    return insert, update


def heartbeat(worker_id: int, sample: Sample, counts: tuple[int, int]) -> Control:
    """Record a resource sample and return the operator's asks.

    One statement on PostgreSQL (an idle pool must cost the database almost nothing), one
    transaction on SQLite. Leases are renewed on their own beat (:func:`queue.renew`).
    """
    insert, update = _heartbeat_sql(connection.vendor)
    insert_params = [worker_id, sample.rss_bytes, sample.cpu_percent, sample.task_id,
                     sample.task_rss_bytes, sample.task_cpu_percent]
    update_params = [sample.rss_bytes, sample.cpu_percent, sample.task_rss_bytes,
                     sample.task_cpu_percent, counts[0], counts[1], worker_id]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"WITH sample AS ({insert}) {update}", insert_params + update_params)
            row = cursor.fetchone()
        else:
            with transaction.atomic():
                cursor.execute(insert, insert_params)
                cursor.execute(update, update_params)
                row = cursor.fetchone()
    budget.refresh()  # no statement unless the node's free memory moved
    if row is None:
        return _control(None, True, True)
    return _control(row[0], row[1] is not None, row[2] is not None)


def start_draining(worker_id: int, *, asked: bool = False) -> bool:
    """Show DRAINING; for an operator's drain (``asked``) only while it is still asked for.

    One conditional statement, so it cannot interleave with :func:`cancel_drain`: either
    the drain shows and the cancel then undoes it, or the cancel came first and this moves
    nothing (False), which tells the worker to go on serving.
    """
    rows = Worker.objects.filter(pk=worker_id)
    if asked:
        rows = rows.filter(drain_requested_at__isnull=False, abort_requested_at=None)
    return bool(move(rows, WorkerState.DRAINING))


def cancel_drain(worker_id: int) -> bool:
    """Withdraw an operator's drain: DRAINING goes back to RUNNING, and a drain the worker
    has not acted on yet is forgotten. False when there was no such drain to withdraw."""
    asked = Worker.objects.filter(
        pk=worker_id, drain_requested_at__isnull=False, abort_requested_at=None
    )
    with transaction.atomic():
        moved = move(asked.filter(state=WorkerState.DRAINING), WorkerState.RUNNING,
                     drain_requested_at=None)
        pending = asked.filter(state__in=[WorkerState.STARTING, WorkerState.RUNNING]).update(
            drain_requested_at=None
        )
    return bool(moved or pending)


def finish(worker_id: int, state: str, reason: str = "", exit_code: int | None = None,
           log_tail: str = "") -> None:
    """The worker's last word about itself: DEAD (ended as asked) or FAILED."""
    move(
        Worker.objects.filter(pk=worker_id),
        state,
        stopped_at=Now(),
        failure_reason=storable.text(reason),
        exit_code=exit_code,
        log_tail=storable.tail(log_tail, queue.TAIL_CHARS),
        doorbell="",
    )


def fail(worker: Worker, reason: str, outcome: str, log_tail: str = "",
         exit_code: int | None = None) -> list[int]:
    """Mark a worker FAILED and put its tasks back, in one transaction.

    A crash between the two would leave its task RUNNING for a whole lease.
    """
    with transaction.atomic():
        finish(worker.pk, WorkerState.FAILED, reason=reason, log_tail=log_tail,
               exit_code=exit_code)
        worker.log_tail = storable.tail(log_tail, queue.TAIL_CHARS)
        return queue.reclaim_worker(worker, outcome, reason)


def get(worker_id: int) -> Worker:
    try:
        return Worker.objects.get(pk=worker_id)
    except Worker.DoesNotExist:
        raise WorkerNotFound(f"no worker with id {worker_id}") from None

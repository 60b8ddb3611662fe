"""Start-up and shut-down of one worker process around its supervisor."""

from __future__ import annotations

import logging
import os
import traceback
from dataclasses import dataclass

from .. import conf
from ..pool import budget, lifecycle, processes
from ..states import WorkerState
from . import logs
from .supervisor import Options, Supervisor

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Launch:
    """How this process was started: by hand, or spawned by Crucible with a token."""

    options: Options
    node: str
    labels: dict[str, str]
    worker_id: int | None = None
    token: str = ""


def identify(launch: Launch) -> int:
    """Register (by hand) or prove the launch token (spawned); return the worker id.

    Either way, refuse to start if another machine is running workers under our node address.
    """
    from ..pool import nodes

    pid, created = processes.identity()
    identity = lifecycle.Identity(
        node=launch.node,
        labels=launch.labels,
        queues=launch.options.queues,
        pid=pid,
        process_started_at=created,
        max_tasks=launch.options.max_tasks,
        host_id=nodes.host_id(),
    )
    if launch.worker_id is None:
        nodes.check_address(identity.node, identity.host_id)
        return lifecycle.register(identity).pk
    if os.getpgid(0) != os.getpid():
        os.setsid()  # lead a process group, so abort can stop the worker and its children
    worker_id = lifecycle.handshake(launch.worker_id, launch.token, identity).pk
    nodes.check_address(identity.node, identity.host_id, worker_id)
    return worker_id


def serve(launch: Launch, worker_id: int) -> str:
    """Run the worker until it ends; record DEAD or FAILED with the reason.

    The exit code recorded is the one this process exits with (SystemExit when aborted).
    """
    settings = conf.get()
    log_file = logs.to_file(settings.log_dir, worker_id, keep_console=launch.worker_id is None)
    supervisor = Supervisor(worker_id, launch.options)
    try:
        budget.register(launch.node)  # the node's budget row, before the first claim
        supervisor.start()
        reason = supervisor.run()
    except BaseException as exc:
        logger.exception("worker %s failed", worker_id)
        supervisor.close()
        reason = f"Worker crashed: {type(exc).__name__}: {exc}"
        tail = logs.tail(log_file) or traceback.format_exc()
        lifecycle.finish(worker_id, WorkerState.FAILED, reason=reason, exit_code=1,
                         log_tail=tail)
        raise
    supervisor.close()
    logger.info("worker %s stopped: %s", worker_id, reason)
    lifecycle.finish(worker_id, WorkerState.DEAD, reason=reason, exit_code=supervisor.exit_code)
    if supervisor.exit_code:
        raise SystemExit(supervisor.exit_code)
    return reason

"""Which machine this is, and refusing a second machine that claims another's node address."""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import socket
import uuid
from datetime import timedelta
from pathlib import Path

from django.db.models import Value
from django.db.models.functions import Now

from .. import conf
from ..exceptions import LaunchRefused
from ..models import Worker
from ..states import WorkerState
from . import lifecycle

logger = logging.getLogger(__name__)
MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
MULTICAST_BIT = 1 << 40  # set in the random stand-in uuid.getnode() makes up without a NIC
APP_KEY = b"crucible.workers.host_id"


def host_id() -> str:
    """This machine's identity: from systemd's machine-id, else from its name and NIC."""
    return _host_id(MACHINE_ID_FILES)


@functools.cache
def _host_id(files: tuple[Path, ...]) -> str:
    # The machine-id is confidential (machine-id(5)): store a keyed hash of it, as
    # sd_id128_get_machine_app_specific() does, never the id itself.
    raw = _machine_id(files) or _fallback_id()
    return hmac.new(APP_KEY, raw.encode(), hashlib.sha256).hexdigest()[:32]


def _machine_id(files: tuple[Path, ...]) -> str:
    for path in files:
        try:
            found = path.read_text().strip()
        except OSError:
            continue
        if found:
            return found
    return ""


def _fallback_id() -> str:
    # Stable across restarts and reboots: the host name, and the hardware address when
    # there is a real one (uuid.getnode() invents a new random one per process otherwise).
    node = uuid.getnode()
    return "/".join([socket.gethostname()] + ([f"{node:012x}"] if not node & MULTICAST_BIT else []))


def check_address(node: str, host: str, worker_id: int | None = None) -> None:
    """Refuse to start if another machine's worker has lately heartbeated as ``node``.

    "Lately" is within WORKER_STALLED_AFTER, on the database's clock. A refused spawned
    worker (``worker_id``) has its row failed with the reason, for the operator to read.
    """
    other = _live_elsewhere(node, host, worker_id)
    if other is None:
        return
    reason = (
        f"node address {node!r} is already in use by another machine (worker {other.pk}, "
        f"host {other.host_id}). Give each machine its own WORKER_NODE_ADDRESS."
    )
    logger.error("refused to start: %s", reason, extra={"node": node, "other": other.pk})
    if worker_id is not None:
        lifecycle.finish(worker_id, WorkerState.FAILED, reason=f"Refused to start: {reason}",
                         exit_code=1)
    raise LaunchRefused(reason)


def _live_elsewhere(node: str, host: str, worker_id: int | None) -> Worker | None:
    recent = Now() - Value(timedelta(seconds=conf.get().stalled_after))
    others = (
        Worker.objects.active()
        .filter(node=node, last_heartbeat__gte=recent)
        .exclude(host_id__in=["", host])  # "": written before hosts were told apart
    )
    if worker_id is not None:
        others = others.exclude(pk=worker_id)
    return others.order_by("-last_heartbeat").first()

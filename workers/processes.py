"""Local processes: is this PID still our worker, and stop a process tree without orphans."""

from __future__ import annotations

import contextlib
import logging
import os
import signal

import psutil

logger = logging.getLogger(__name__)
CREATE_TIME_SLACK = 0.05


def identity() -> tuple[int, float]:
    """This process's PID and create time (which tells a reused PID apart)."""
    me = psutil.Process()
    return me.pid, me.create_time()


def is_worker_process(pid: int | None, started_at: float | None) -> bool:
    """True only if the PID is alive, was created when recorded, and runs ``runworker``."""
    if not pid or started_at is None:
        return False
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - started_at) > CREATE_TIME_SLACK:
            return False
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return any("runworker" in part for part in proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def signal_worker(pid: int | None, started_at: float | None, sig: int) -> bool:
    """Signal a worker's process group (its own PID if it leads none), after verifying it."""
    if pid is None or not is_worker_process(pid, started_at):
        logger.warning("not signalling pid %s: it is no longer that worker", pid)
        return False
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def descendants(pid: int) -> list[psutil.Process]:
    try:
        children: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return children


def stop(family: list[psutil.Process], grace: float = 0.3) -> None:
    """TERM the processes, give them ``grace`` seconds, then KILL what is left."""
    for proc in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs(family, timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(alive, timeout=1.0)



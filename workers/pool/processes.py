"""Local processes: is this PID still our worker, and stop a process tree without orphans."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)
CREATE_TIME_SLACK = 0.05
PR_SET_CHILD_SUBREAPER = 36
STAT_STARTTIME = 22  # field number in /proc/<pid>/stat, counted from 1


def identity() -> tuple[int, float]:
    """This process's PID and create time (which tells a reused PID apart)."""
    pid = os.getpid()
    return pid, create_time(pid)


def create_time(pid: int) -> float:
    """When ``pid`` started, on a clock that stepping the wall clock does not move.

    On Linux: seconds since boot. Elsewhere psutil's create time (wall clock) is the best
    there is. A node only compares values it wrote itself, so the two never meet.
    """
    if sys.platform.startswith("linux"):
        return _seconds_since_boot(pid)
    return psutil.Process(pid).create_time()


def _seconds_since_boot(pid: int) -> float:
    # psutil adds the boot time from /proc/stat's btime, which moves with the wall clock;
    # the start time in clock ticks since boot (field 22 of /proc/<pid>/stat) does not.
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError) as exc:
        raise psutil.NoSuchProcess(pid) from exc
    after_name = stat.rpartition(b")")[2].split()  # the name may hold spaces and ")"
    return int(after_name[STAT_STARTTIME - 3]) / os.sysconf("SC_CLK_TCK")


def is_worker_process(pid: int | None, started_at: float | None) -> bool:
    """True only if the PID is alive, was created when recorded, and runs ``runworker``."""
    if not pid or started_at is None:
        return False
    try:
        proc = psutil.Process(pid)
        if abs(create_time(pid) - started_at) > CREATE_TIME_SLACK:
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


PROC = Path("/proc")


@functools.cache
def _children_files() -> bool:
    """Whether the kernel lists each thread's children (CONFIG_PROC_CHILDREN)."""
    return (PROC / "self" / "task" / str(threading.get_native_id()) / "children").exists()


def descendant_pids(pid: int) -> list[int] | None:
    """The PIDs below ``pid``, read from each of its threads' ``children`` file (Linux):
    what it costs grows with the tree, where psutil's ``children`` reads the status of
    every process on the machine (56 ms a call with a thousand processes here, and a
    task with a memory limit is measured ten times a second). None where the kernel
    keeps no such files; a process that ends meanwhile is left out."""
    if not _children_files():
        return None
    found: list[int] = []
    pending = [pid]
    while pending:
        children = _children_of(pending.pop())
        found.extend(children)
        pending.extend(children)
    return found


def _children_of(pid: int) -> list[int]:
    task = PROC / str(pid) / "task"
    try:
        threads = os.listdir(task)
    except OSError:
        return []  # ended meanwhile
    children: list[int] = []
    for thread in threads:
        try:
            text = (task / thread / "children").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        children.extend(int(word) for word in text.split())
    return children


def stop(family: list[psutil.Process], grace: float = 0.3) -> None:
    """TERM the processes, give them ``grace`` seconds, then KILL what is left; reap ours."""
    _signal_all(family, signal.SIGTERM)
    alive = _wait_gone(family, grace)
    _signal_all(alive, signal.SIGKILL)
    _wait_gone(alive, 1.0)
    for proc in family:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(proc.pid, os.WNOHANG)


def _signal_all(family: list[psutil.Process], sig: int) -> None:
    for proc in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.send_signal(sig)


def _gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(family: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited (a zombie counts); return those still alive."""
    deadline = time.monotonic() + timeout
    alive = [proc for proc in family if not _gone(proc)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.005)
        alive = [proc for proc in alive if not _gone(proc)]
    return alive


def become_subreaper() -> None:
    """Orphaned descendants of a killed task come back to us, to be stopped and reaped."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1)


def reap_orphans(keep: int | None) -> None:
    """Reap exited children other than ``keep`` (the executor, reaped on its own)."""
    for proc in psutil.Process().children():
        if proc.pid != keep and _gone(proc):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, os.WNOHANG)

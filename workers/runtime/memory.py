"""A task's memory as its worker sees it: the executor's size, the task's limit, the OOM killer.

Linux only where it reads ``/proc``; elsewhere each reading is None and nothing is enforced
from it (the limit is still sampled through psutil).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
from dataclasses import dataclass

from .. import conf

MB = 1024 * 1024
LIMIT_SAMPLE_EVERY = 0.1  # a task with a limit: its process tree is measured this often
EXECUTOR_GROWTH_MB = 100  # default ceiling: the executor's size at start plus this


def own_rss() -> int | None:
    """This process's resident set now, in bytes."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def executor_ceiling(base_rss: int, settings: conf.WorkerSettings) -> int:
    """How large an executor may stay after a task before it is replaced."""
    if settings.executor_max_rss_mb:
        return settings.executor_max_rss_mb * MB
    return base_rss + EXECUTOR_GROWTH_MB * MB


def limit_bytes(task_limit_mb: int | None, settings: conf.WorkerSettings) -> int | None:
    """The task's own limit, else WORKER_MEMORY_LIMIT_MB; None when neither is set."""
    mb = task_limit_mb or settings.memory_limit_mb
    return mb * MB if mb else None


VMSTAT = "/proc/vmstat"


@functools.cache
def _vmstat() -> int:
    """/proc/vmstat, kept open: one ``pread`` a read."""
    return os.open(VMSTAT, os.O_RDONLY | os.O_CLOEXEC)


def oom_kills() -> int | None:
    """The kernel's count of OOM kills since boot (``oom_kill`` in /proc/vmstat)."""
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(_vmstat(), 1 << 16, 0)
        at = text.find(b"\noom_kill ")
        if at >= 0:
            return int(text[at + 10:text.find(b"\n", at + 1)])
    return None


OOM_COUNT_FRESH_S = 1.0


@dataclass(slots=True)
class _Reading:
    at: float = float("-inf")
    count: int | None = None


_last = _Reading()


def oom_kills_lately(now: float) -> int | None:
    """The OOM-kill count as read at most OOM_COUNT_FRESH_S before ``now`` (monotonic
    seconds): what an attempt's start
    records. The kernel builds /proc/vmstat anew at every read (about 0.15 ms), which at
    every hand-over was a tenth of a busy worker's time."""
    if now - _last.at >= OOM_COUNT_FRESH_S:
        _last.at, _last.count = now, oom_kills()
    return _last.count


def killed_by_oom(status: int | None, kills_before: int | None) -> bool:
    """The OOM signature: SIGKILL from nobody of ours while the kernel's count of OOM kills
    rose since the attempt began (since at most a second before it). Another process killed
    by the OOM killer at that moment looks the same."""
    if status is None or kills_before is None or not os.WIFSIGNALED(status):
        return False
    kills_now = oom_kills()
    return os.WTERMSIG(status) == signal.SIGKILL and kills_now is not None and (
        kills_now > kills_before)


def over_limit_message(rss: int, limit: int) -> str:
    return (f"memory limit exceeded: its processes used {mb(rss)} MB, over its limit of "
            f"{mb(limit)} MB")


def mb(value: int) -> int:
    return round(value / MB)

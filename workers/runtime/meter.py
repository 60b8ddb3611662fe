"""Resource readings of the worker and of the task it runs (children included)."""

from __future__ import annotations

import contextlib

import psutil

from ..pool import processes
from ..pool.lifecycle import Sample


class Meter:
    """Keeps psutil handles so that CPU percentages are measured between readings."""

    def __init__(self) -> None:
        self.me = psutil.Process()
        self.me.cpu_percent(interval=None)
        self._known: dict[int, psutil.Process] = {}

    def _family(self, pid: int) -> list[psutil.Process]:
        try:
            root = self._known.get(pid) or psutil.Process(pid)
            below = processes.descendant_pids(pid)
            family = [root, *(root.children(recursive=True) if below is None
                              else self._handles(below))]
        except psutil.NoSuchProcess:
            return []
        known = {proc.pid: self._known.get(proc.pid, proc) for proc in family}
        self._known = known
        return list(known.values())

    def _handles(self, pids: list[int]) -> list[psutil.Process]:
        """psutil's handles of ``pids`` (kept ones first: they hold the CPU readings)."""
        found = []
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                found.append(self._known.get(pid) or psutil.Process(pid))
        return found

    def tree(self, pid: int | None) -> tuple[int, float]:
        if pid is None:
            return 0, 0.0
        rss, cpu = 0, 0.0
        for proc in self._family(pid):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                rss += proc.memory_info().rss
                cpu += proc.cpu_percent(interval=None)
        return rss, cpu

    def tree_rss(self, pid: int | None) -> int:
        """The resident memory of ``pid`` and its descendants (CPU readings untouched)."""
        if pid is None:
            return 0
        rss = 0
        for proc in self._family(pid):
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                rss += proc.memory_info().rss
        return rss

    def sample(self, executor_pid: int | None, task_id: int | None) -> Sample:
        own_rss = self.me.memory_info().rss
        own_cpu = self.me.cpu_percent(interval=None)
        task_rss, task_cpu = self.tree(executor_pid)
        return Sample(
            rss_bytes=own_rss + task_rss,
            cpu_percent=own_cpu + task_cpu,
            task_id=task_id,
            task_rss_bytes=task_rss if task_id else None,
            task_cpu_percent=task_cpu if task_id else None,
        )

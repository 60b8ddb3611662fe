"""How busy the rest of the machine is while the benchmark measures (Linux /proc).

On a 2-core machine anything else running (a test suite, a build) skews the
figures, so each measurement records the CPU time used by *foreign* processes:
everything that is neither the benchmark's own process tree nor a `postgres`
process (the database serves the benchmark, so its backends are not foreign;
that also hides another user's database load). Processes are sampled every half
second, so one that starts and ends between two samples is missed: the figure
is a lower bound.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 0.5
CPU_SAMPLE_SECONDS = 0.1  # a drain of 5,000 tasks lasts seconds
EXCLUDED_COMMANDS = frozenset({"postgres"})


@dataclass(frozen=True)
class ProcStat:
    comm: str
    ppid: int
    ticks: int  # utime + stime
    start_ticks: int  # since boot


def read_proc_stats() -> dict[int, ProcStat]:
    stats: dict[int, ProcStat] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        rest = raw[raw.rindex(")") + 2 :].split()
        # Fields after "(comm)": state ppid ... utime(11) stime(12) ... starttime(19)
        stats[int(entry.name)] = ProcStat(
            comm, int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[19])
        )
    return stats


def uptime_ticks() -> float:
    return float(Path("/proc/uptime").read_text().split()[0]) * CLK_TCK


def descendants(stats: dict[int, ProcStat], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        children.setdefault(stat.ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, ()))
    return found


@dataclass
class Sampling:
    """A context manager that samples (``_sample``) when opened, then every ``every``
    seconds on a thread of its own until it is closed."""

    every: float = SAMPLE_SECONDS
    _started_ticks: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _open(self) -> None:
        self._started_ticks = uptime_ticks()
        self._sample()
        self._thread = threading.Thread(target=self._run, name=type(self).__name__, daemon=True)
        self._thread.start()

    def _close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def _sample(self) -> None:
        raise NotImplementedError


@dataclass
class ForeignLoad(Sampling):
    """Context manager: CPU seconds used by foreign processes while it is open."""

    root: int = field(default_factory=os.getpid)
    _baseline: dict[int, int] = field(default_factory=dict)
    _last: dict[int, ProcStat] = field(default_factory=dict)
    _started: float = 0.0
    _elapsed: float = 0.0

    def __enter__(self) -> ForeignLoad:
        self._started = time.monotonic()
        self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()
        self._sample()
        self._elapsed = time.monotonic() - self._started

    def _sample(self) -> None:
        stats = read_proc_stats()
        ours = descendants(stats, self.root)
        for pid, stat in stats.items():
            if pid in ours or stat.comm in EXCLUDED_COMMANDS:
                continue
            if pid not in self._baseline:
                # A process that started while we watch counts from zero.
                started_before = stat.start_ticks < self._started_ticks
                self._baseline[pid] = stat.ticks if started_before else 0
            self._last[pid] = stat

    def cpu_seconds(self) -> float:
        ticks = sum(s.ticks - self._baseline[pid] for pid, s in self._last.items())
        return ticks / CLK_TCK

    def report(self) -> dict[str, Any]:
        """Foreign CPU, in seconds and as % of one core over the elapsed time."""
        by_command: Counter[str] = Counter()
        for pid, stat in self._last.items():
            by_command[stat.comm] += stat.ticks - self._baseline[pid]
        seconds = self.cpu_seconds()
        elapsed = self._elapsed or (time.monotonic() - self._started)
        return {
            "cpu_seconds": round(seconds, 2),
            "pct_of_one_core": round(100 * seconds / elapsed, 1) if elapsed else 0.0,
            "elapsed_seconds": round(elapsed, 1),
            "top_cpu_seconds": {
                comm: round(ticks / CLK_TCK, 2)
                for comm, ticks in by_command.most_common(3)
                if ticks > 0
            },
        }


def wait_until_quiet(timeout: float, max_pct: float = 10.0, window: float = 2.0) -> bool:
    """Wait up to `timeout` s for a `window` in which foreign CPU stays under `max_pct`."""
    deadline = time.monotonic() + timeout
    while True:
        with ForeignLoad() as load:
            time.sleep(window)
        if 100 * load.cpu_seconds() / window <= max_pct:
            return True
        if time.monotonic() >= deadline:
            return False


def tree_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process and every process under it, including
    the children it has already reaped; 0 once it is gone."""
    try:
        root = psutil.Process(pid)
        family = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = process.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
    return total


@dataclass
class CpuTrail(Sampling):
    """CPU seconds, sampled every CPU_SAMPLE_SECONDS while open, of some process trees
    (a product's workers) and of the database server's processes (``postgres``): the CPU
    a window inside it took is read afterwards (``between``).

    A database process that ends between two samples loses what it used since the last
    one, so the server's figure is a lower bound.
    """

    roots: list[int] = field(default_factory=list)
    every: float = CPU_SAMPLE_SECONDS
    _samples: list[tuple[float, float, float]] = field(default_factory=list)
    _server: dict[int, int] = field(default_factory=dict)
    _server_ticks: int = 0

    def __enter__(self) -> CpuTrail:
        self._open()
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _sample(self) -> None:
        for pid, stat in read_proc_stats().items():
            if stat.comm not in EXCLUDED_COMMANDS:
                continue
            if pid not in self._server:  # one started while we watch counts from zero
                started_before = stat.start_ticks < self._started_ticks
                self._server[pid] = stat.ticks if started_before else 0
            self._server_ticks += stat.ticks - self._server[pid]
            self._server[pid] = stat.ticks
        workers = sum(tree_cpu_seconds(pid) for pid in self.roots)
        self._samples.append((time.time(), workers, self._server_ticks / CLK_TCK))

    def between(self, start: float, end: float) -> tuple[float, float]:
        """Workers' and database server's CPU seconds from the last sample at or before
        ``start`` to the first at or after ``end`` (epoch seconds)."""
        before = [s for s in self._samples if s[0] <= start] or self._samples[:1]
        after = [s for s in self._samples if s[0] >= end] or self._samples[-1:]
        first, last = before[-1], after[0]
        return last[1] - first[1], last[2] - first[2]

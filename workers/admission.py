"""Admission: how many workers this machine may run, and whether one more may be added.

Capacity is the smallest of three limits:

* ``max_count``: the configured ``WORKER_MAX_COUNT``;
* ``cores``: the physical cores (the logical count when the physical one is unknown);
* ``memory``: the active workers plus as many more as fit in the available memory above
  the guard, at the memory one task needs (the largest estimate among queued tasks when any
  declares one, else ``WORKER_MEMORY_PER_TASK_MB``). The available memory reported by the
  operating system already excludes what running workers use, so they are added back as
  a count. Windows keeps an extra 1 GB guard; macOS under memory pressure halves the limit.

The machine is read only through the small ``_``-prefixed boundary functions, so tests
replace them; :func:`compute` does the arithmetic and :func:`check` gathers the inputs.

:func:`admit` decides a request to start workers: ``force`` goes past the memory and core
limits (the operator takes the risk), never past ``WORKER_MAX_COUNT``, the hard cap.
"""

from __future__ import annotations

import logging
import platform
import subprocess
from dataclasses import dataclass

import psutil
from django.db.models import Max

from . import conf
from .conf import WorkerSettings
from .exceptions import AdmissionRefused
from .models import Task, Worker

logger = logging.getLogger(__name__)

MB = 1024 * 1024
WINDOWS_EXTRA_GUARD_MB = 1024
SYSCTL = "/usr/sbin/sysctl"
PRESSURE_SYSCTL = "kern.memorystatus_vm_pressure_level"
PRESSURE_WARN_LEVEL = 2  # 1 normal, 2 warning, 4 critical
SYSCTL_TIMEOUT = 2.0

__all__ = [
    "Admission",
    "Machine",
    "MachineMemory",
    "admit",
    "check",
    "compute",
    "machine_memory",
    "read_machine",
]


@dataclass(frozen=True, slots=True)
class MachineMemory:
    """The machine's memory as the operating system reports it (bytes, percent in use)."""

    total: int
    available: int
    percent: float


@dataclass(frozen=True, slots=True)
class Machine:
    """Everything about the machine that admission depends on."""

    memory: MachineMemory
    cores: int
    platform: str
    memory_pressure: bool = False


@dataclass(frozen=True, slots=True)
class Admission:
    """The answer: capacity, active workers, whether one more fits, and why."""

    admissible: int
    active: int
    can_add: bool
    reason: str
    limits: dict[str, int]
    memory: MachineMemory
    binding: str = "max_count"  # the key of the limit that decides: max_count, cores, memory


# --- Boundary: the only functions that touch psutil, the platform or a subprocess. ---


def _virtual_memory() -> MachineMemory:
    vm = psutil.virtual_memory()
    return MachineMemory(total=int(vm.total), available=int(vm.available), percent=vm.percent)


def _physical_cores() -> int | None:
    count: int | None = psutil.cpu_count(logical=False)
    return count


def _logical_cores() -> int | None:
    count: int | None = psutil.cpu_count(logical=True)
    return count


def _platform() -> str:
    return platform.system()


def _macos_memory_pressure() -> bool:
    """True when macOS reports memory pressure at warning level or worse."""
    try:
        result = subprocess.run(
            [SYSCTL, "-n", PRESSURE_SYSCTL],
            capture_output=True,
            text=True,
            timeout=SYSCTL_TIMEOUT,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("could not read %s: %s", PRESSURE_SYSCTL, exc)
        return False
    try:
        return int(result.stdout.strip()) >= PRESSURE_WARN_LEVEL
    except ValueError:
        logger.debug("unexpected %s output: %r", PRESSURE_SYSCTL, result.stdout)
        return False


# --- Reading the machine and the database. ---


def machine_memory() -> MachineMemory:
    """The machine's memory now, for the panel."""
    return _virtual_memory()


def _cores() -> int:
    return _physical_cores() or _logical_cores() or 1


def read_machine() -> Machine:
    system = _platform()
    return Machine(
        memory=_virtual_memory(),
        cores=_cores(),
        platform=system,
        memory_pressure=system == "Darwin" and _macos_memory_pressure(),
    )


def _active_workers(node: str) -> int:
    return Worker.objects.active().on_node(node).count()


def _largest_queued_estimate() -> int | None:
    """The largest ``memory_mb`` among queued tasks; None when none declares one."""
    largest: int | None = Task.objects.queued().aggregate(largest=Max("memory_mb"))["largest"]
    return largest or None


def check(node: str | None = None) -> Admission:
    """May one more worker run on ``node`` (this node by default)?"""
    settings = conf.get()
    return compute(
        settings,
        read_machine(),
        active=_active_workers(node or settings.node_address),
        queued_memory_mb=_largest_queued_estimate(),
    )


# --- The arithmetic. ---


def compute(
    settings: WorkerSettings,
    machine: Machine,
    *,
    active: int,
    queued_memory_mb: int | None = None,
) -> Admission:
    """Capacity from the settings, the machine and the queue; no I/O."""
    per_task_mb = queued_memory_mb or settings.memory_per_task_mb
    guard_mb = _guard_mb(settings, machine)
    memory_limit = _memory_limit(machine, active, per_task_mb, guard_mb)
    limits = {"max_count": settings.max_count, "cores": machine.cores, "memory": memory_limit}
    binding = min(limits, key=limits.__getitem__)  # ties: max_count, then cores
    admissible = limits[binding]
    if binding == "memory":
        why = _memory_sentence(
            machine, memory_limit, per_task_mb, guard_mb, from_queue=bool(queued_memory_mb)
        )
    elif binding == "cores":
        why = f"Physical cores ({machine.cores}) allow {_count(admissible, 'worker')}"
    else:
        why = f"WORKER_MAX_COUNT allows {_count(admissible, 'worker')}"
    return Admission(
        admissible=admissible,
        active=active,
        can_add=active < admissible,
        reason=f"{why}; {_active_phrase(active)}.",
        limits=limits,
        memory=machine.memory,
        binding=binding,
    )


def admit(room: Admission, count: int, *, force: bool) -> None:
    """Refuse ``count`` more workers beyond capacity; ``force`` never passes WORKER_MAX_COUNT."""
    cap = room.limits["max_count"]
    if room.active + count > cap:
        reason = f"WORKER_MAX_COUNT allows {_count(cap, 'worker')}; {_active_phrase(room.active)}."
        raise AdmissionRefused(
            f"Cannot add {count}: {reason} Force does not go past WORKER_MAX_COUNT.",
            reason=reason, forceable=False,
        )
    if not force and room.active + count > room.admissible:
        raise AdmissionRefused(f"Cannot add {count}: {room.reason}", reason=room.reason,
                               forceable=True)


def _guard_mb(settings: WorkerSettings, machine: Machine) -> int:
    extra = WINDOWS_EXTRA_GUARD_MB if machine.platform == "Windows" else 0
    return settings.memory_guard_mb + extra


def _memory_limit(machine: Machine, active: int, per_task_mb: int, guard_mb: int) -> int:
    """Active workers plus the ones that fit above the guard (fewer when below it)."""
    if per_task_mb < 1:
        raise ValueError("the memory a task needs must be at least 1 MB")
    headroom = machine.memory.available - guard_mb * MB
    more = headroom // (per_task_mb * MB)  # floors: below the guard, workers are too many
    limit = max(0, active + more)
    return limit // 2 if machine.memory_pressure else limit


def _memory_sentence(
    machine: Machine, limit: int, per_task_mb: int, guard_mb: int, *, from_queue: bool
) -> str:
    need = f"needs {_gb_mb(per_task_mb)} each"
    if from_queue:
        need += ", the largest queued estimate"
    headroom = machine.memory.available - guard_mb * MB
    guard = f"a {_gb_mb(guard_mb)} guard"
    if machine.platform == "Windows":
        guard += f" (incl. {_gb_mb(WINDOWS_EXTRA_GUARD_MB)} extra on Windows)"
    if headroom >= 0:
        room = f"{_gb(headroom)} available after {guard}"
    else:
        room = f"only {_gb(machine.memory.available)} available, below {guard}"
    pressure = "; halved under macOS memory pressure" if machine.memory_pressure else ""
    return f"Memory allows {_count(limit, 'worker')} ({need}, {room}{pressure})"


def _gb(num_bytes: int) -> str:
    return f"{num_bytes / (1024 * MB):.1f} GB"


def _gb_mb(megabytes: int) -> str:
    return f"{megabytes / 1024:.1f} GB"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _active_phrase(active: int) -> str:
    if active == 0:
        return "none are active"
    return f"{active} is active" if active == 1 else f"{active} are active"

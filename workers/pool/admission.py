"""Admission: how many workers this machine may run, and whether one more may be added.

Capacity is the smallest of three limits:

* ``max_count``: the configured ``WORKER_MAX_COUNT``;
* ``cores``: the physical cores (the logical count when the physical one is unknown);
* ``memory``: the workers running a task now, plus as many more as the node's memory has
  room for at what the next task needs. Room is the node's budget (what the scheduler
  budgets: available memory above the guard plus what running tasks measurably use, or
  WORKER_NODE_MEMORY_MB) minus the estimates already committed to running tasks. What the
  next task needs is the estimate of the largest queued task that could start now (due,
  in an open queue), else ``WORKER_MEMORY_PER_TASK_MB``; the answer names that task. An
  idle worker counts as one that will take such a task: adding idle workers never raises
  the figure. Windows keeps an extra 1 GB guard; macOS under memory pressure halves the
  limit.

The machine is read only through the small ``_``-prefixed boundary functions, so tests
replace them; :func:`compute` does the arithmetic and :func:`check` gathers the inputs.

:func:`admit` decides a request to start workers: ``force`` goes past the memory and core
limits (the operator takes the risk), never past ``WORKER_MAX_COUNT``, the hard cap.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import subprocess
from dataclasses import dataclass
from typing import Any

import psutil
from django.db.models import Count, Q, Sum
from django.db.models.functions import Now

from .. import conf
from ..conf import WorkerSettings
from ..exceptions import AdmissionRefused
from ..models import Node, PausedQueue, Task, Worker
from ..models.node import running_sum
from . import budget
from .budget import megabytes

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
    "NextTask",
    "NodeLoad",
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
class NextTask:
    """The largest queued task that could start now: what one more worker must have room for."""

    id: int
    func_path: str
    memory_mb: int
    source: str

    def describe(self) -> str:
        return f"task {self.id} ({self.func_path}, {self.source})"


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """What the node's running tasks hold: how many, their estimates, their measured memory."""

    busy: int = 0
    committed_mb: int = 0
    tasks_rss: int = 0  # bytes


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
    load: NodeLoad = NodeLoad()
    budget_mb: int = 0
    need_mb: int = 0
    next_task: NextTask | None = None
    waiting: str = ""  # why the first queued task that fits no node waits, if one does

    @property
    def free_mb(self) -> int:
        return self.budget_mb - self.load.committed_mb

    def memory_line(self) -> str:
        """Memory committed to running tasks, measured, and what the next task needs."""
        needs = f"next task needs {megabytes(self.need_mb)}"
        if self.next_task is not None:
            needs += f" ({self.next_task.describe()})"
        else:
            needs += " (WORKER_MEMORY_PER_TASK_MB: nothing queued)"
        return (f"{megabytes(self.load.committed_mb)} of {megabytes(self.budget_mb)} committed "
                f"to {self.load.busy} running task{'' if self.load.busy == 1 else 's'}, "
                f"{_gb(self.load.tasks_rss)} measured; {needs}")


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


def _load(node: str) -> NodeLoad:
    found = budget.running_on(node).aggregate(busy=Count("pk"),
                                              committed=Sum("memory_estimate_mb"),
                                              rss=budget.RSS)
    return NodeLoad(found["busy"], found["committed"] or 0, found["rss"] or 0)


def _due_queued() -> Any:
    """Queued tasks that could start now: due, in a queue no one paused."""
    due = Q(run_after__isnull=True) | Q(run_after__lte=Now())
    open_queues = ~Q(queue__in=PausedQueue.objects.values("name"))
    return Task.objects.queued().filter(due, open_queues)


def _next_task() -> NextTask | None:
    """The largest estimate among queued tasks that could start now (an index walk)."""
    found = (_due_queued().filter(memory_estimate_mb__gt=0)
             .order_by("-memory_estimate_mb", "id")
             .values_list("pk", "func_path", "memory_estimate_mb", "memory_source").first())
    return None if found is None else NextTask(*found)


WAITING_LOOKED_AT = 50  # queued tasks, in claim order, looked at for one that fits nowhere


def waiting_reason() -> str:
    """Why the first queued task (in claim order) that fits no node with workers waits."""
    nodes = list(Node.objects.filter(name__in=Worker.objects.active().values("node"))
                 .annotate(committed_mb=running_sum("memory_estimate_mb"),
                           committed_cpus=running_sum("cpus"))
                 .values_list("name", "memory_mb", "committed_mb", "cpus", "committed_cpus"))
    if not nodes:
        return ""
    name, memory, committed, cpus, used_cpus = max(nodes, key=lambda n: n[1] - n[2])
    if committed <= 0 and used_cpus <= 0:
        return ""  # an idle node takes any task
    candidates = _due_queued().order_by("-priority", "id")[:WAITING_LOOKED_AT]
    for pk, need, want in candidates.values_list("pk", "memory_estimate_mb", "cpus"):
        if need > memory - committed:
            return (f"task {pk} waits: needs {megabytes(need)}, "
                    f"{megabytes(max(memory - committed, 0))} free on {name}")
        if want > cpus - used_cpus:
            return f"task {pk} waits: needs {want} CPUs, {max(cpus - used_cpus, 0)} free on {name}"
    return ""


def check(node: str | None = None) -> Admission:
    """May one more worker run on ``node`` (this node by default)?"""
    settings = conf.get()
    node = node or settings.node_address
    room = compute(settings, read_machine(), active=_active_workers(node), load=_load(node),
                   next_task=_next_task())
    return dataclasses.replace(room, waiting=waiting_reason())


# --- The arithmetic. ---


def compute(
    settings: WorkerSettings,
    machine: Machine,
    *,
    active: int,
    load: NodeLoad | None = None,
    next_task: NextTask | None = None,
) -> Admission:
    """Capacity from the settings, the machine, the node's running tasks and the queue."""
    load = load or NodeLoad()
    per_task_mb = next_task.memory_mb if next_task else settings.memory_per_task_mb
    guard_mb = _guard_mb(settings, machine)
    budget_mb = _budget_mb(settings, machine, load, guard_mb)
    memory_limit = _memory_limit(machine, load, per_task_mb, budget_mb)
    limits = {"max_count": settings.max_count, "cores": machine.cores, "memory": memory_limit}
    binding = min(limits, key=limits.__getitem__)  # ties: max_count, then cores
    admissible = limits[binding]
    if binding == "memory":
        why = _memory_sentence(settings, machine, limit=memory_limit, per_task_mb=per_task_mb,
                               guard_mb=guard_mb, budget_mb=budget_mb, load=load,
                               next_task=next_task)
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
        load=load,
        budget_mb=budget_mb,
        need_mb=per_task_mb,
        next_task=next_task,
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


def _budget_mb(settings: WorkerSettings, machine: Machine, load: NodeLoad, guard_mb: int) -> int:
    """The node's budget as the scheduler counts it, with this platform's guard."""
    guarded = dataclasses.replace(settings, memory_guard_mb=guard_mb)
    mem = machine.memory
    return budget.compute(guarded, mem.total, mem.available, load.tasks_rss, machine.cores
                          ).memory_mb


def _memory_limit(machine: Machine, load: NodeLoad, per_task_mb: int, budget_mb: int) -> int:
    """Workers running a task, plus one per next task that fits what they left free."""
    if per_task_mb < 1:
        raise ValueError("the memory a task needs must be at least 1 MB")
    more = max(budget_mb - load.committed_mb, 0) // per_task_mb
    limit = load.busy + more
    return limit // 2 if machine.memory_pressure else limit


def _memory_sentence(settings: WorkerSettings, machine: Machine, *, limit: int,
                     per_task_mb: int, guard_mb: int, budget_mb: int, load: NodeLoad,
                     next_task: NextTask | None) -> str:
    need = f"needs {_gb_mb(per_task_mb)} each"
    if next_task is not None:
        need += f", the largest queued task: {next_task.describe()}"
    guard = f"a {_gb_mb(guard_mb)} guard"
    if machine.platform == "Windows":
        guard += f" (incl. {_gb_mb(WINDOWS_EXTRA_GUARD_MB)} extra on Windows)"
    if settings.node_memory_mb is not None:
        room = f"WORKER_NODE_MEMORY_MB budgets {_gb_mb(budget_mb)}"
    elif machine.memory.available + load.tasks_rss >= guard_mb * MB:
        room = f"{_gb_mb(budget_mb)} budget after {guard}"
    else:
        room = f"only {_gb(machine.memory.available)} available, below {guard}"
    if load.busy:
        room += (f", {_gb_mb(load.committed_mb)} of it committed to "
                 f"{_count(load.busy, 'running task')}")
    pressure = "; halved under macOS memory pressure" if machine.memory_pressure else ""
    return f"Memory allows {_count(limit, 'worker')} ({need}; {room}{pressure})"


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

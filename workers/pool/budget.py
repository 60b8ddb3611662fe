"""A node's budget: how much memory and how many CPUs its running tasks' estimates may take.

Memory: WORKER_NODE_MEMORY_MB when set; otherwise what the machine has available minus
WORKER_MEMORY_GUARD_MB, plus what this node's running tasks measurably use (the budget is
for them, so their own use does not shrink it), never above physical memory minus the
guard. A worker writes it when it starts and again whenever available memory moved by
more than REREAD_MB since it last did (checked at each heartbeat, without a statement
while it has not). CPUs: WORKER_NODE_CPUS, else the node's cores.

The budget lives in the node's :class:`~workers.models.Node` row, which the claim reads.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import psutil
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Sum
from django.db.models.functions import Now

from .. import conf
from ..conf import WorkerSettings
from ..exceptions import TooLarge
from ..models import Node, Task, TaskQuerySet, Worker
from ..queue.hotpath import hot_cursor
from ..states import ACTIVE_WORKER_STATES

logger = logging.getLogger(__name__)

MB = 1024 * 1024
REREAD_MB = 64  # a smaller move of available memory is noise, not worth a write

__all__ = [
    "Budget", "check_fits", "compute", "local_node", "megabytes", "refresh", "register",
    "running_on", "tasks_rss",
]


@dataclass(frozen=True, slots=True)
class Budget:
    memory_mb: int
    cpus: int
    total_mb: int
    measured: bool  # follows available memory (WORKER_NODE_MEMORY_MB unset)
    ceiling_mb: int = 0  # the most memory_mb can be: a task above it can only run alone


@dataclass(slots=True)
class _Local:
    """This process's node, once a worker registered it, and the memory it last saw."""

    name: str = ""
    available: int = 0


_local = _Local()


# --- Boundary: the only functions that read the machine (tests replace them). ---


def _memory() -> tuple[int, int]:
    """Physical and available memory, bytes."""
    vm = psutil.virtual_memory()
    return int(vm.total), int(vm.available)


@functools.cache  # psutil globs /sys for it; a machine's cores do not change while it runs
def _cores() -> int:
    count: int | None = psutil.cpu_count(logical=False) or psutil.cpu_count(logical=True)
    return count or 1


# --- The arithmetic. ---


def compute(settings: WorkerSettings, total: int, available: int, tasks_rss: int,
            cores: int) -> Budget:
    """The budget from the settings and the machine's readings (bytes); no I/O."""
    total_mb = total // MB
    cpus = settings.node_cpus or cores
    if settings.node_memory_mb is not None:
        return Budget(settings.node_memory_mb, cpus, total_mb, measured=False,
                      ceiling_mb=settings.node_memory_mb)
    ceiling = max(0, total_mb - settings.memory_guard_mb)
    followed = (available + tasks_rss) // MB - settings.memory_guard_mb
    return Budget(max(0, min(ceiling, followed)), cpus, total_mb, measured=True,
                  ceiling_mb=ceiling)


def tasks_rss(name: str) -> int:
    """What the tasks running on node ``name`` use now, as their workers last measured.

    Only workers whose task is still RUNNING: a worker's last reading outlives its task
    until its next heartbeat, and counting it would overstate the budget meanwhile.
    """
    found: int | None = running_on(name).aggregate(rss=RSS)["rss"]
    return found or 0


RSS = Sum("worker__task_rss_bytes")


def running_on(name: str) -> TaskQuerySet:
    """The running tasks of node ``name`` whose workers are alive (one a worker: the short
    tasks it holds beside one, ``queue.holding``, are not counted again)."""
    return Task.objects.running().filter(worker__node=name, held=False,
                                         worker__state__in=ACTIVE_WORKER_STATES)


def read(name: str) -> Budget:
    """Node ``name``'s budget now."""
    total, available = _memory()
    _local.available = available
    return compute(conf.get(), total, available, tasks_rss(name), _cores())


# --- The node's row. ---


def register(name: str) -> Node:
    """Write node ``name``'s budget (creating its row) and remember it as this process's."""
    budget = read(name)
    fields = {"memory_mb": budget.memory_mb, "cpus": budget.cpus, "total_mb": budget.total_mb,
              "measured": budget.measured, "ceiling_mb": budget.ceiling_mb}
    Node.objects.bulk_create([Node(name=name, **fields)], update_conflicts=True,
                             unique_fields=["name"], update_fields=list(fields))
    Node.objects.filter(name=name).update(updated_at=Now())
    _local.name = name
    logger.info("node %s: budget %s MB, %s CPUs", name, budget.memory_mb, budget.cpus,
                extra={"node": name, "budget_mb": budget.memory_mb, "cpus": budget.cpus})
    return Node.objects.get(name=name)


def local_node() -> str:
    """The node this process claims for: the one its worker registered, else this machine's."""
    return _local.name or conf.get().node_address


def refresh() -> bool:
    """Re-read a measured budget once available memory moved by REREAD_MB; True if written.

    Costs no statement while memory holds still (an idle pool stays quiet).
    """
    settings = conf.get()
    if not _local.name or settings.node_memory_mb is not None:
        return False
    _, available = _memory()
    if abs(available - _local.available) < REREAD_MB * MB:
        return False
    budget = read(_local.name)
    Node.objects.filter(name=_local.name).update(
        memory_mb=budget.memory_mb, total_mb=budget.total_mb, updated_at=Now()
    )
    return True


# --- Refusing at submission what no node could ever run. ---


def megabytes(mb: int) -> str:
    """``600 MB`` or ``8.0 GB``, as pages and refusals show memory."""
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:,} MB"


def _known_nodes() -> list[tuple[str, int, int]]:
    """(name, the most its memory budget can be, CPUs) of the nodes that run workers now;
    else of every node seen; else this machine's, as a worker started here would budget it.
    The most, not what is free now: a submission is not refused for a passing shortage.
    Asked at every submission with an estimate: one statement, built once."""
    db = connections[DEFAULT_DB_ALIAS]
    with hot_cursor(db) as cursor:
        cursor.execute(_nodes_sql(db.alias), LIVE_STATES)
        rows = cursor.fetchall()
    live = [(name, max(memory, ceiling), cpus) for name, memory, ceiling, cpus, on in rows if on]
    if live or rows:
        return live or [(name, max(memory, ceiling), cpus)
                        for name, memory, ceiling, cpus, _ in rows]
    total, available = _memory()
    here = compute(conf.get(), total, available, 0, _cores())
    return [(conf.get().node_address, here.ceiling_mb, here.cpus)]


LIVE_STATES = [state.value for state in ACTIVE_WORKER_STATES]  # the parameters of live_sql


def live_sql(alias: str) -> str:
    """Whether node ``n`` runs workers now (``LIVE_STATES`` as its parameters)."""
    quote = connections[alias].ops.quote_name
    states = ", ".join(["%s"] * len(LIVE_STATES))
    return (f"EXISTS (SELECT 1 FROM {quote(Worker._meta.db_table)} AS w"
            f" WHERE w.node = n.name AND w.state IN ({states}))")


def largest_sql(alias: str) -> str:
    """SQL for the most any node could budget, as ``_known_nodes`` counts it: of the nodes
    running workers, else of every node; NULL when none is known (``LIVE_STATES`` as its
    parameters). For a refusal made inside another statement (``inserting``)."""
    nodes = f"{connections[alias].ops.quote_name(Node._meta.db_table)} AS n"
    most = "CASE WHEN n.memory_mb > n.ceiling_mb THEN n.memory_mb ELSE n.ceiling_mb END"
    return (f"COALESCE((SELECT MAX({most}) FROM {nodes} WHERE {live_sql(alias)}),"
            f" (SELECT MAX({most}) FROM {nodes}))")


@functools.cache
def _nodes_sql(alias: str) -> str:
    quote = connections[alias].ops.quote_name
    return (f"SELECT n.name, n.memory_mb, n.ceiling_mb, n.cpus, {live_sql(alias)}"
            f" FROM {quote(Node._meta.db_table)} AS n ORDER BY n.name")


def check_fits(memory_mb: int, cpus: int, source: str) -> None:
    """Refuse a task larger than every node's whole budget, with both figures."""
    nodes = _known_nodes()
    name, largest, _ = max(nodes, key=lambda node: node[1])
    if memory_mb > largest:
        raise TooLarge("memory_mb", (
            f"needs {megabytes(memory_mb)} ({source}), more than any node's budget: the "
            f"largest is {megabytes(largest)} ({name}). Submit with force to queue it "
            "anyway (it then runs only on a node with nothing else running)"))
    cpu_name, _, most_cpus = max(nodes, key=lambda node: node[2])
    if cpus > most_cpus:
        raise TooLarge("cpus", (
            f"needs {cpus} CPUs, more than any node has: the most is {most_cpus} "
            f"({cpu_name}). Submit with force to queue it anyway"))

"""Small helpers for integration tests: enqueue quickly, read outcomes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from workers import queue
from workers.models import Node, Task, Worker
from workers.models.node import running_sum
from workers.spec import TaskSpec
from workers.states import TaskState, WorkerState

TASKS = "tests.testapp.tasks"


def enqueue(name: str, *args: Any, **fields: Any) -> Task:
    return queue.enqueue(TaskSpec(func_path=f"{TASKS}.{name}", args=list(args), **fields))


def enqueue_many(name: str, arg_lists: list[list[Any]], **fields: Any) -> list[int]:
    with transaction.atomic():
        return [enqueue(name, *args, **fields).pk for args in arg_lists]


def running_workers() -> list[Worker]:
    return list(Worker.objects.filter(state=WorkerState.RUNNING))


def task(task_id: int) -> Task:
    return Task.objects.get(pk=task_id)


def succeeded(task_id: int) -> bool:
    return task(task_id).state == TaskState.SUCCEEDED


def idle_marks(runtime_dir: Path) -> int:
    """How many idle marks (a worker idle for a queue) the doorbells' folder holds."""
    return sum(1 for _ in (runtime_dir / "bell").glob("idle-*"))


def committed(node: str) -> tuple[int, int]:
    """What node ``node``'s running tasks hold of its budget: (MB, CPUs)."""
    found = Node.objects.filter(name=node).annotate(
        mb=running_sum("memory_estimate_mb"), cpus_held=running_sum("cpus"))
    return found.values_list("mb", "cpus_held").get()


LAB_NODE = "lab-node-1"


def a_busy_node_and_a_waiting_task(settings: Any) -> Task:
    """Node lab-node-1 (12 GB) with one task running that holds 9114 MB (2 GB measured), and
    an 8 GB task queued: it waits. This node is the settings' own."""
    settings.CRUCIBLE = dataclasses.replace(settings.CRUCIBLE, node_address=LAB_NODE,
                                            node_memory_mb=12288)
    busy = Worker.objects.create(node=LAB_NODE, state=WorkerState.RUNNING,
                                 task_rss_bytes=2**31, queues=["default"])
    node = Node.objects.create(name=LAB_NODE, memory_mb=12288, cpus=8)
    Task.objects.create(func_path="m.run", timeout=60.0, state=TaskState.RUNNING, worker=busy,
                        node=node, memory_estimate_mb=9114, memory_source="declared")
    return Task.objects.create(func_path="m.big", timeout=60.0, memory_mb=8192,
                               memory_estimate_mb=8192, memory_source="declared")


@contextmanager
def statements() -> Iterator[list[str]]:
    """Every statement sent to the database: SQLite's own trace (the INSERT bypasses
    Django's cursor there), PostgreSQL's through Django's debug cursor."""
    if connection.vendor != "sqlite":
        with CaptureQueriesContext(connection) as queries:
            sent: list[str] = []
            yield sent
        sent.extend(q["sql"] for q in queries.captured_queries)
        return
    connection.ensure_connection()
    sent = []
    connection.connection.set_trace_callback(sent.append)
    try:
        yield sent
    finally:
        connection.connection.set_trace_callback(None)


def columns_of(task: Task) -> dict[str, Any]:
    return {f.attname: getattr(task, f.attname) for f in Task._meta.concrete_fields
            if f.attname not in ("id", "created_at")}

"""Small helpers for integration tests: enqueue quickly, read outcomes."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from workers import queue
from workers.models import Node, Task, Worker
from workers.models.node import running_sum
from workers.spec import TaskSpec
from workers.states import WorkerState

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


def committed(node: str) -> tuple[int, int]:
    """What node ``node``'s running tasks hold of its budget: (MB, CPUs)."""
    found = Node.objects.filter(name=node).annotate(
        mb=running_sum("memory_estimate_mb"), cpus_held=running_sum("cpus"))
    return found.values_list("mb", "cpus_held").get()

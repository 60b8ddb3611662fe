from __future__ import annotations

from django.db import models
from django.db.models import IntegerField, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce, Now


def running_sum(column: str) -> Coalesce:
    """The sum of ``column`` over a node's running tasks (0 for none), as the claim sums
    them: what they hold of its budget (``memory_estimate_mb``, ``cpus``)."""
    from .task import Task

    running = Task.objects.filter(state="RUNNING", node=OuterRef("pk")).values("node")
    return Coalesce(Subquery(running.annotate(total=Sum(column)).values("total")), 0,
                    output_field=IntegerField())


class Node(models.Model):
    """A machine's memory and CPU budget, which its running tasks' estimates share.

    A worker claims a task only if the task's estimate fits in ``memory_mb`` minus the
    estimates of the tasks running on the node now (and its ``cpus`` in ``cpus`` likewise),
    summed in the claim's own statement (``workers.queue.hotpath``).
    """

    name = models.CharField(max_length=255, unique=True, help_text="WORKER_NODE_ADDRESS.")
    memory_mb = models.PositiveIntegerField(help_text="Budget for running tasks' estimates.")
    cpus = models.PositiveIntegerField(help_text="Budget for running tasks' CPUs.")
    total_mb = models.PositiveIntegerField(default=0, help_text="Physical memory.")
    ceiling_mb = models.PositiveIntegerField(
        default=0, help_text="The most the budget can be: WORKER_NODE_MEMORY_MB, else physical "
                             "memory minus the guard. A task above it runs only alone.")
    measured = models.BooleanField(
        default=True, help_text="The budget follows free memory (WORKER_NODE_MEMORY_MB unset)."
    )
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"node {self.name}"

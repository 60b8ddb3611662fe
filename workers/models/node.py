from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class Node(models.Model):
    """A machine's memory and CPU budget, and what its running tasks have committed of it.

    The ledger of the claim: a worker claims a task only if the task's estimate fits in
    ``memory_mb - committed_mb`` (and its ``cpus`` in ``cpus - committed_cpus``), deciding
    under this row's lock. ``committed_*`` are kept by database triggers on the task table
    (migration 0010): a task entering RUNNING adds its share to its node, leaving RUNNING
    (by any path: success, failure, cancel, reclaim, requeue, delete) takes it back, in
    the same transaction as the task's change.
    """

    name = models.CharField(max_length=255, unique=True, help_text="WORKER_NODE_ADDRESS.")
    memory_mb = models.PositiveIntegerField(help_text="Budget for running tasks' estimates.")
    cpus = models.PositiveIntegerField(help_text="Budget for running tasks' CPUs.")
    committed_mb = models.IntegerField(default=0)
    committed_cpus = models.IntegerField(default=0)
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

    @property
    def free_mb(self) -> int:
        return self.memory_mb - self.committed_mb

    @property
    def free_cpus(self) -> int:
        return self.cpus - self.committed_cpus

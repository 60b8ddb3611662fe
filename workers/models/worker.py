from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now

from ..states import ACTIVE_WORKER_STATES, WorkerState

if TYPE_CHECKING:
    from .task import Task


class WorkerQuerySet(models.QuerySet["Worker"]):
    def active(self) -> WorkerQuerySet:
        return self.filter(state__in=ACTIVE_WORKER_STATES)

    def on_node(self, node: str) -> WorkerQuerySet:
        return self.filter(node=node)


class Worker(models.Model):
    """One worker process: it registers, heartbeats, and is pruned once gone."""

    state = models.CharField(
        max_length=16, choices=WorkerState.choices, default=WorkerState.STARTING, db_index=True
    )
    node = models.CharField(max_length=255)
    labels = models.JSONField(default=dict, blank=True)
    queues = models.JSONField(default=list, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    process_started_at = models.FloatField(
        null=True, blank=True, help_text="Process create time, to tell a reused PID apart."
    )
    spawned = models.BooleanField(default=False, help_text="Started by Crucible, not by hand.")
    launch_token_hash = models.CharField(max_length=64, blank=True)
    doorbell = models.CharField(max_length=255, blank=True)
    max_tasks = models.PositiveIntegerField(null=True, blank=True)

    host_id = models.CharField(
        max_length=64,
        blank=True,
        help_text="The machine's identity, to catch two nodes sharing one address.",
    )

    # Set by the database's clock: every deadline is judged by the database, never a node.
    created_at = models.DateTimeField(db_default=Now())
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    last_heartbeat = models.DateTimeField(null=True, blank=True)
    drain_requested_at = models.DateTimeField(null=True, blank=True)
    abort_requested_at = models.DateTimeField(null=True, blank=True)

    current_task = models.ForeignKey(
        "workers.Task", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    rss_bytes = models.BigIntegerField(null=True, blank=True)
    cpu_percent = models.FloatField(null=True, blank=True)
    task_rss_bytes = models.BigIntegerField(null=True, blank=True)
    task_cpu_percent = models.FloatField(null=True, blank=True)
    tasks_succeeded = models.PositiveIntegerField(default=0)
    tasks_failed = models.PositiveIntegerField(default=0)

    exit_code = models.IntegerField(null=True, blank=True)
    failure_reason = models.TextField(blank=True)
    log_tail = models.TextField(blank=True)

    objects = WorkerQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        indexes = [
            # pruning of ended workers: an index range, not a scan
            models.Index(
                fields=["stopped_at"],
                condition=Q(state__in=["DEAD", "FAILED"]),
                name="worker_ended_idx",
            ),
        ]
        permissions = [("manage_workers", "Can add, drain and abort workers")]

    def __str__(self) -> str:
        return f"worker {self.pk} ({self.state})"

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_WORKER_STATES

    def running_task(self) -> Task | None:
        return self.current_task

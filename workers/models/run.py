from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.db.models.functions import Now


class RunState(models.TextChoices):
    CREATED = "CREATED", "Created"
    RUNNING = "RUNNING", "Running"
    PAUSED = "PAUSED", "Paused"
    COMPLETED = "COMPLETED", "Completed"
    FAILED = "FAILED", "Failed"
    CANCELLED = "CANCELLED", "Cancelled"


class FailurePolicy(models.TextChoices):
    HALT = "halt", "Halt: a failed task stops the run"
    CONTINUE = "continue", "Continue: only the failed task's dependants are skipped"


class HaltRunning(models.TextChoices):
    """What a halt does to the run's tasks that are running at that moment."""

    FINISH = "finish", "Let them finish"
    CANCEL = "cancel", "Cancel them"


class RunMode(models.TextChoices):
    PARALLEL = "parallel", "Parallel"
    SEQUENTIAL = "sequential", "Sequential: one task at a time, in dependency order"


ACTIVE_RUN_STATES = (RunState.CREATED, RunState.RUNNING, RunState.PAUSED)
FINISHED_RUN_STATES = (RunState.COMPLETED, RunState.FAILED, RunState.CANCELLED)


class RunQuerySet(models.QuerySet["Run"]):
    def active(self) -> RunQuerySet:
        return self.filter(state__in=ACTIVE_RUN_STATES)


class Run(models.Model):
    """A group of tasks with dependencies, a failure policy and a cap on parallel tasks.

    Its tasks point at it (``Task.run``). Whether they may be queued is decided in the
    transactions that change the run or end one of its tasks (``workers.runs``), never by
    the claim: a task the run holds back is WAITING.
    """

    name = models.CharField(max_length=200)
    state = models.CharField(max_length=16, choices=RunState.choices, default=RunState.CREATED,
                             db_index=True)
    failure_policy = models.CharField(max_length=16, choices=FailurePolicy.choices,
                                      default=FailurePolicy.HALT)
    halt_running = models.CharField(max_length=16, choices=HaltRunning.choices,
                                    default=HaltRunning.FINISH)
    mode = models.CharField(max_length=16, choices=RunMode.choices, default=RunMode.PARALLEL)
    max_parallel = models.PositiveIntegerField(null=True, blank=True)
    locks = models.JSONField(default=list, blank=True)
    task_locks = models.BooleanField(default=False, help_text="Some of its tasks lock keys.")
    merge_outputs = models.BooleanField(
        default=False, help_text="Copy its tasks' work directories into its own on completion."
    )
    wait_for_locks = models.BooleanField(
        default=False, help_text="Wait (CREATED) for its locks held by another run, not refuse."
    )
    reason = models.TextField(blank=True, help_text="Why it failed or was cancelled.")
    created_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(db_default=Now())
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"run {self.pk} {self.name} ({self.state})"

    @property
    def cap(self) -> int | None:
        """How many of its tasks may be queued or running at once (None: no limit)."""
        if self.mode == RunMode.SEQUENTIAL:
            return 1
        return self.max_parallel

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_RUN_STATES


class LockKey(models.Model):
    """A lock key asked for by a run's task (``task``) or by the run itself (no task).

    Keys overlap when equal, or when one is a path inside the other (``/data/a`` and
    ``/data/a/b``). ``held``: this holder has it; at most one task and one run hold each
    exact key (constraints), and no two of overlapping keys (checked under one lock by
    ``workers.runs.locks``; a task may use a key its own run holds). A task holds its keys
    from the moment it is queued until it ends for good; a run holds its own until its last
    task ended.
    """

    key = models.CharField(max_length=255)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="lock_keys")
    task = models.ForeignKey("workers.Task", null=True, blank=True, on_delete=models.CASCADE,
                             related_name="lock_keys")
    held = models.BooleanField(default=False)
    blocked_by = models.CharField(max_length=300, blank=True,
                                  help_text="Who holds an overlapping key, while it waits.")

    class Meta:
        constraints = [  # a run's own key and one of its tasks' may be the same
            models.UniqueConstraint(fields=["key"], condition=Q(held=True, task__isnull=False),
                                    name="lock_key_held_by_one_task"),
            models.UniqueConstraint(fields=["key"], condition=Q(held=True, task__isnull=True),
                                    name="lock_key_held_by_one_run"),
        ]
        indexes = [models.Index(fields=["held", "key"], name="lock_key_held_idx")]

    def __str__(self) -> str:
        holder = f"task {self.task_id}" if self.task_id else f"run {self.run_id}"
        return f"lock {self.key} of {holder}{' (held)' if self.held else ''}"

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from ..states import FINISHED_TASK_STATES, Outcome, TaskState

MIN_PRIORITY = -100
MAX_PRIORITY = 100
# A count or size that is never negative: checked by Django's validation (forms, the
# admin), not by a CHECK in the database. PostgreSQL builds every CHECK of a table anew for
# each statement that writes a row of it, and a busy worker's one statement per task writes
# two task rows and an attempt's: ten such checks cost an eighth of its time there.
NOT_NEGATIVE = [MinValueValidator(0)]


class TaskQuerySet(models.QuerySet["Task"]):
    def queued(self) -> TaskQuerySet:
        return self.filter(state=TaskState.QUEUED)

    def running(self) -> TaskQuerySet:
        return self.filter(state=TaskState.RUNNING)

    def finished(self) -> TaskQuerySet:
        return self.filter(state__in=FINISHED_TASK_STATES)


class Task(models.Model):
    """A call of a module-level function, queued until a worker runs it."""

    func_path = models.CharField(max_length=255)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    queue = models.CharField(max_length=100, default="default")
    priority = models.SmallIntegerField(
        default=0, validators=[MinValueValidator(MIN_PRIORITY), MaxValueValidator(MAX_PRIORITY)]
    )
    state = models.CharField(max_length=16, choices=TaskState.choices, default=TaskState.QUEUED)
    max_attempts = models.IntegerField(default=3, validators=NOT_NEGATIVE)
    attempt = models.IntegerField(default=0, validators=NOT_NEGATIVE,
                                  help_text="Attempts claimed so far.")
    attempt_base = models.IntegerField(
        default=0, validators=NOT_NEGATIVE,
        help_text="Attempts before the last operator retry; max_attempts counts from it.",
    )
    timeout = models.FloatField(help_text="Seconds one attempt may run.")
    memory_mb = models.IntegerField(null=True, blank=True, validators=NOT_NEGATIVE)
    # What the scheduler reserves on a node while the task runs, fixed at enqueue (and at
    # an operator's retry) by workers.pool.estimates; 0 for a row made outside enqueue().
    memory_estimate_mb = models.IntegerField(db_default=0, validators=NOT_NEGATIVE)
    memory_source = models.CharField(max_length=8, blank=True, db_default="",
                                     help_text="declared, learned or default.")
    memory_estimate_runs = models.IntegerField(
        db_default=0, validators=NOT_NEGATIVE,
        help_text="Measured runs a learned estimate rests on.")
    memory_limit_mb = models.IntegerField(
        null=True, blank=True, validators=NOT_NEGATIVE,
        help_text="Stopped when its processes grow past this.")
    cpus = models.SmallIntegerField(db_default=1, validators=NOT_NEGATIVE)
    memory_scale = models.FloatField(
        null=True, blank=True,
        help_text="The size its function's memory grows with (e.g. grid points); "
                  "learned estimates are per unit of it.")
    node = models.ForeignKey(
        "workers.Node", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        db_index=False, db_constraint=False,  # set by every claim: no lookup of the node row
        help_text="The node whose budget the task's running attempt counts against.",
    )
    retry_backoff = models.FloatField(null=True, blank=True, help_text="Base delay in seconds.")
    run_after = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    last_attempted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    worker = models.ForeignKey(
        "workers.Worker",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tasks",
        # Only running tasks need finding by worker (fenced writes, reclaims); an index over
        # a worker's whole history misled PostgreSQL's planner on fenced writes.
        db_index=False,
    )
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)

    progress = models.FloatField(null=True, blank=True)
    progress_message = models.CharField(max_length=500, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    crash_count = models.IntegerField(default=0, validators=NOT_NEGATIVE)
    quarantined_at = models.DateTimeField(null=True, blank=True)
    peak_rss_bytes = models.BigIntegerField(null=True, blank=True)
    # the one CHECK kept: it guards the exact dependency counts (a bug would show, not hide)
    pending_dependencies = models.PositiveIntegerField(
        default=0, help_text="Predecessors that have not succeeded yet; WAITING until 0."
    )
    has_dependents = models.BooleanField(default=False)
    # Short tasks claimed together (``runtime.bundle``): RUNNING but maybe not begun; its
    # attempt counts only once its worker knows it began. One that a lost worker held is
    # queued again uncounted and is never held again, so it is counted the next time.
    # A default in the database too: SQL that writes task rows need not name them.
    held = models.BooleanField(default=False, db_default=False, editable=False)
    run_alone = models.BooleanField(default=False, db_default=False, editable=False)
    # A run's task: its end is followed up (``has_dependents``) when the run needs it.
    run = models.ForeignKey("workers.Run", null=True, blank=True, on_delete=models.CASCADE,
                            related_name="tasks", db_index=False)  # task_run_state_idx
    name = models.CharField(max_length=100, blank=True, help_text="Its name within its run.")

    objects = TaskQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["queue", "-priority", "id"],
                condition=Q(state="QUEUED"),
                name="task_claim_idx",
            ),
            models.Index(fields=["state", "queue"], name="task_state_idx"),
            # The running tasks, few at any time: what a node's running tasks hold (summed by
            # every claim on that node), a worker's running task, expired leases. One index,
            # not one per question: each claim writes every index a running row is in, and a
            # lease renewal, touching no indexed column, can update its row in place (HOT).
            models.Index(
                fields=["node", "worker"], condition=Q(state="RUNNING"), name="task_running_idx"
            ),
            # admission's "largest queued memory estimate": an index walk, not a scan. Only
            # tasks with an estimate: a claim, which asks for none, cannot walk this index
            # (statistics that saw no queued task made PostgreSQL's claim walk it, and sort
            # every queued task, at every claim: test_claim_plan).
            models.Index(
                fields=["-memory_estimate_mb"],
                condition=Q(state="QUEUED", memory_estimate_mb__gt=0),
                name="task_queued_estimate_idx",
            ),
            # 10 million rows: the admin's search and priority filter (migration 0007, which
            # also indexes (worker, id) on PostgreSQL only, for deleting ended workers)
            models.Index(fields=["func_path", "id"], name="task_func_path_idx"),
            models.Index(fields=["priority", "id"], condition=~Q(priority=0),
                         name="task_priority_idx"),
            # retention pruning and "failed in the last hour": a range of finished tasks
            models.Index(
                fields=["finished_at"],
                condition=Q(state__in=["SUCCEEDED", "FAILED", "CANCELLED"]),
                name="task_finished_idx",
            ),
            # runs: a run's tasks by state, and its tasks free to queue (workers.runs);
            # partial, so tasks outside runs cost these indexes nothing
            models.Index(fields=["run", "state"], condition=Q(run__isnull=False),
                         name="task_run_state_idx"),
            models.Index(fields=["run", "-priority", "id"],
                         condition=Q(run__isnull=False, state="WAITING", pending_dependencies=0),
                         name="task_run_ready_idx"),
            # the task list's queued tasks newest first, due or not by the index alone, and
            # its scheduled ones by run_after (only tasks that have one cost that index)
            models.Index(fields=["id", "run_after"], condition=Q(state="QUEUED"),
                         name="task_queued_idx"),
            models.Index(fields=["run_after"], condition=Q(state="QUEUED", run_after__isnull=False),
                         name="task_scheduled_idx"),
            # and its failed or cancelled ones newest first: PostgreSQL walked every newer task
            # for them (a task that succeeds never enters this index)
            models.Index(fields=["state", "id"], condition=Q(state__in=["FAILED", "CANCELLED"]),
                         name="task_failed_idx"),
        ]
        permissions = [
            ("submit_task", "Can submit tasks"),
            ("cancel_task", "Can cancel tasks"),
            ("retry_task", "Can retry tasks"),
        ]

    def __str__(self) -> str:
        return f"task {self.pk} {self.func_path} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED_TASK_STATES


class TaskAttempt(models.Model):
    """One execution of a task: who ran it, when, how it ended."""

    # its attempts by task through the unique (task, number): no index of its own to write
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="attempts",
                             db_index=False)
    number = models.IntegerField(validators=NOT_NEGATIVE)
    worker = models.ForeignKey(
        "workers.Worker", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    worker_label = models.CharField(max_length=300, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error = models.TextField(blank=True)
    exception_class = models.CharField(max_length=255, blank=True)
    traceback = models.TextField(blank=True)
    peak_rss_bytes = models.BigIntegerField(null=True, blank=True)
    log_tail = models.TextField(blank=True)
    memory_estimate_mb = models.IntegerField(
        null=True, blank=True, validators=NOT_NEGATIVE,
        help_text="The estimate it was scheduled with.")
    memory_limit_mb = models.IntegerField(
        null=True, blank=True, validators=NOT_NEGATIVE,
        help_text="The limit it ran under; empty: none.")

    class Meta:
        ordering = ["task", "number"]
        constraints = [
            models.UniqueConstraint(fields=["task", "number"], name="attempt_unique_number")
        ]

    def __str__(self) -> str:
        return f"attempt {self.number} of task {self.task_id}: {self.outcome}"


class TaskDependency(models.Model):
    """``task`` waits until ``depends_on`` has succeeded."""

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="dependencies")
    depends_on = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="dependents")
    satisfied = models.BooleanField(
        default=False, help_text="Counted off once when depends_on succeeded; never twice."
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task", "depends_on"], name="dependency_unique")
        ]

    def __str__(self) -> str:
        return f"task {self.task_id} after task {self.depends_on_id}"

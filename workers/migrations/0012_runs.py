"""Runs of dependent tasks (issue 11): the Run, each task's run and name in it, lock keys."""

import django.db.models.deletion
import django.db.models.functions.datetime
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("workers", "0011_memory_learning")]

    operations = [
        migrations.CreateModel(
            name="Run",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                           verbose_name="ID")),
                ("name", models.CharField(max_length=200)),
                ("state", models.CharField(
                    choices=[("CREATED", "Created"), ("RUNNING", "Running"), ("PAUSED", "Paused"),
                             ("COMPLETED", "Completed"), ("FAILED", "Failed"),
                             ("CANCELLED", "Cancelled")],
                    db_index=True, default="CREATED", max_length=16)),
                ("failure_policy", models.CharField(
                    choices=[("halt", "Halt: a failed task stops the run"),
                             ("continue", "Continue: only the failed task's dependants are skipped")],
                    default="halt", max_length=16)),
                ("halt_running", models.CharField(
                    choices=[("finish", "Let them finish"), ("cancel", "Cancel them")],
                    default="finish", max_length=16)),
                ("mode", models.CharField(
                    choices=[("parallel", "Parallel"),
                             ("sequential", "Sequential: one task at a time, in dependency order")],
                    default="parallel", max_length=16)),
                ("max_parallel", models.PositiveIntegerField(blank=True, null=True)),
                ("locks", models.JSONField(blank=True, default=list)),
                ("task_locks", models.BooleanField(default=False,
                                                   help_text="Some of its tasks lock keys.")),
                ("merge_outputs", models.BooleanField(
                    default=False,
                    help_text="Copy its tasks' work directories into its own on completion.")),
                ("wait_for_locks", models.BooleanField(
                    default=False,
                    help_text="Wait (CREATED) for its locks held by another run, not refuse.")),
                ("reason", models.TextField(blank=True, help_text="Why it failed or was cancelled.")),
                ("created_by", models.CharField(blank=True, max_length=150)),
                ("created_at", models.DateTimeField(
                    db_default=django.db.models.functions.datetime.Now())),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={"ordering": ["-id"]},
        ),
        migrations.AddField(
            model_name="task",
            name="name",
            field=models.CharField(blank=True, help_text="Its name within its run.", max_length=100),
        ),
        migrations.AddField(
            model_name="task",
            name="run",
            field=models.ForeignKey(blank=True, db_index=False, null=True,
                                    on_delete=django.db.models.deletion.CASCADE,
                                    related_name="tasks", to="workers.run"),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(condition=models.Q(("run__isnull", False)), fields=["run", "state"],
                               name="task_run_state_idx"),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(
                condition=models.Q(("pending_dependencies", 0), ("run__isnull", False),
                                   ("state", "WAITING")),
                fields=["run", "-priority", "id"], name="task_run_ready_idx"),
        ),
        migrations.CreateModel(
            name="LockKey",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                           verbose_name="ID")),
                ("key", models.CharField(max_length=255)),
                ("held", models.BooleanField(default=False)),
                ("blocked_by", models.CharField(
                    blank=True, help_text="Who holds an overlapping key, while it waits.",
                    max_length=300)),
                ("run", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                          related_name="lock_keys", to="workers.run")),
                ("task", models.ForeignKey(blank=True, null=True,
                                           on_delete=django.db.models.deletion.CASCADE,
                                           related_name="lock_keys", to="workers.task")),
            ],
            options={
                "indexes": [models.Index(fields=["held", "key"], name="lock_key_held_idx")],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("held", True), ("task__isnull", False)),
                        fields=("key",), name="lock_key_held_by_one_task"),
                    models.UniqueConstraint(
                        condition=models.Q(("held", True), ("task__isnull", True)),
                        fields=("key",), name="lock_key_held_by_one_run"),
                ],
            },
        ),
    ]

"""Scheduling by memory (issue 10): each node's budget and ledger, each task's estimate, CPUs
and limit, and the triggers that keep a node's committed share equal to its running tasks'."""

import django.db.models.deletion
import django.db.models.functions.datetime
from django.conf import settings
from django.db import migrations, models

from workers.migrations import _ledger as ledger

UNFINISHED = ("WAITING", "QUEUED", "RUNNING")


def add_triggers(apps, schema_editor):
    """The triggers that keep each node's committed share (workers.ledger); put back after
    every migrate too, since SQLite drops them when a later migration rebuilds the table."""
    ledger.install(schema_editor.connection)


def drop_triggers(apps, schema_editor):
    ledger.uninstall(schema_editor.connection)


def estimate_unfinished(apps, schema_editor):
    """Tasks queued before this migration get the estimate enqueue() would have given them."""
    Task = apps.get_model("workers", "Task")
    unfinished = Task.objects.filter(state__in=UNFINISHED)
    unfinished.filter(memory_mb__isnull=False).update(
        memory_estimate_mb=models.F("memory_mb"), memory_source="declared"
    )
    default_mb = settings.CRUCIBLE.memory_per_task_mb
    unfinished.filter(memory_mb__isnull=True).update(
        memory_estimate_mb=default_mb, memory_source="default"
    )


class Migration(migrations.Migration):
    dependencies = [("workers", "0009_paused_queue")]

    operations = [
        migrations.CreateModel(
            name="Node",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                           verbose_name="ID")),
                ("name", models.CharField(help_text="WORKER_NODE_ADDRESS.", max_length=255,
                                          unique=True)),
                ("memory_mb", models.PositiveIntegerField(
                    help_text="Budget for running tasks' estimates.")),
                ("cpus", models.PositiveIntegerField(help_text="Budget for running tasks' CPUs.")),
                ("committed_mb", models.IntegerField(default=0)),
                ("committed_cpus", models.IntegerField(default=0)),
                ("total_mb", models.PositiveIntegerField(default=0, help_text="Physical memory.")),
                ("ceiling_mb", models.PositiveIntegerField(
                    default=0,
                    help_text="The most the budget can be: WORKER_NODE_MEMORY_MB, else physical "
                              "memory minus the guard. A task above it runs only alone.")),
                ("measured", models.BooleanField(
                    default=True,
                    help_text="The budget follows free memory (WORKER_NODE_MEMORY_MB unset).")),
                ("updated_at", models.DateTimeField(
                    db_default=django.db.models.functions.datetime.Now())),
            ],
            options={"ordering": ["name"]},
        ),
        migrations.RemoveIndex(model_name="task", name="task_queued_memory_idx"),
        migrations.AddField(
            model_name="task", name="cpus", field=models.PositiveSmallIntegerField(db_default=1),
        ),
        migrations.AddField(
            model_name="task", name="memory_estimate_mb",
            field=models.PositiveIntegerField(db_default=0),
        ),
        migrations.AddField(
            model_name="task", name="memory_estimate_runs",
            field=models.PositiveIntegerField(
                db_default=0, help_text="Measured runs a learned estimate rests on."),
        ),
        migrations.AddField(
            model_name="task", name="memory_limit_mb",
            field=models.PositiveIntegerField(
                blank=True, help_text="Stopped when its processes grow past this.", null=True),
        ),
        migrations.AddField(
            model_name="task", name="memory_source",
            field=models.CharField(blank=True, db_default="",
                                   help_text="declared, learned or default.", max_length=8),
        ),
        migrations.AddField(
            model_name="task", name="node",
            field=models.ForeignKey(
                blank=True, db_constraint=False, db_index=False,
                help_text="The node whose budget the task's running attempt counts against.",
                null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+",
                to="workers.node"),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(condition=models.Q(("state", "QUEUED")),
                               fields=["-memory_estimate_mb"], name="task_queued_estimate_idx"),
        ),
        migrations.RunPython(estimate_unfinished, migrations.RunPython.noop, elidable=True),
        migrations.RunPython(add_triggers, drop_triggers),
    ]

"""Learned memory estimates (issue 10): profiles folded from measured peaks, the scale a task
names, the memory each attempt ran with, and the outcomes of a task stopped for memory."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("workers", "0010_memory_scheduling")]

    operations = [
        migrations.CreateModel(
            name="MemoryProfile",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                           verbose_name="ID")),
                ("func_path", models.CharField(max_length=255, unique=True)),
                ("runs", models.PositiveIntegerField(
                    default=0, help_text="Measured attempts folded in, ever.")),
                ("samples", models.JSONField(
                    blank=True, default=list,
                    help_text="The latest measured attempts: [scale or null, peak in MB] pairs.")),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={"ordering": ["func_path"]},
        ),
        migrations.CreateModel(
            name="LearningMark",
            fields=[
                ("name", models.CharField(max_length=50, primary_key=True, serialize=False)),
                ("attempt_id", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.AddField(
            model_name="task",
            name="memory_scale",
            field=models.FloatField(
                blank=True, null=True,
                help_text="The size its function's memory grows with (e.g. grid points); "
                          "learned estimates are per unit of it."),
        ),
        migrations.AddField(
            model_name="taskattempt",
            name="memory_estimate_mb",
            field=models.PositiveIntegerField(
                blank=True, null=True, help_text="The estimate it was scheduled with."),
        ),
        migrations.AddField(
            model_name="taskattempt",
            name="memory_limit_mb",
            field=models.PositiveIntegerField(
                blank=True, null=True, help_text="The limit it ran under; empty: none."),
        ),
        migrations.AlterField(
            model_name="taskattempt",
            name="outcome",
            field=models.CharField(
                choices=[
                    ("SUCCEEDED", "Succeeded"), ("ERROR", "Raised an error"),
                    ("TIMED_OUT", "Timed out"), ("CANCELLED", "Cancelled"),
                    ("ABORTED", "Worker aborted"), ("CRASHED", "Process crashed"),
                    ("WORKER_LOST", "Worker lost"), ("LEASE_EXPIRED", "Lease expired"),
                    ("MEMORY_LIMIT", "Memory limit exceeded"),
                    ("OOM_KILLED", "Killed by the OOM killer"),
                ],
                max_length=16,
            ),
        ),
    ]

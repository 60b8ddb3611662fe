"""The claim sums what its node's running tasks hold (an index on them by node), instead of
reading a row that triggers kept: every claim and success of a node's workers wrote that
one row, so on PostgreSQL the workers of a node took turns (issue 8, speed). The running
tasks' three indexes become one (each claim wrote all three), and the lease's expiry is no
longer indexed, so a lease renewal can update its row in place."""

from django.db import migrations, models

from workers.migrations import _ledger as ledger


def drop_triggers(apps, schema_editor):
    ledger.uninstall(schema_editor.connection)


def add_triggers(apps, schema_editor):
    ledger.install(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("workers", "0013_task_views_speed")]

    operations = [
        migrations.RunPython(drop_triggers, add_triggers),
        migrations.RemoveField(model_name="node", name="committed_mb"),
        migrations.RemoveField(model_name="node", name="committed_cpus"),
        migrations.RemoveIndex(model_name="task", name="task_lease_idx"),
        migrations.RemoveIndex(model_name="task", name="task_running_worker_idx"),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(condition=models.Q(("state", "RUNNING")),
                               fields=["node", "worker"], name="task_running_idx"),
        ),
    ]

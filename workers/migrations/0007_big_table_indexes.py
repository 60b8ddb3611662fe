# Indexes for 10 million task rows: the admin's worker, priority and search filters, and
# deleting an ended worker (the database checks Task.worker for each deleted worker row:
# without an index that is a full scan of the task table, per worker).
# Task.Meta must list the same three indexes (see the lead's note in the retention report).

from django.db import migrations, models

WORKER_INDEX = 'CREATE INDEX "task_worker_idx" ON "workers_task" ("worker_id", "id")'


def worker_index(apps, schema_editor):
    """PostgreSQL only. On SQLite this index slowed the two-worker drain by a third (each
    claim moves it), while one machine's pool rarely needs to delete workers among millions
    of tasks."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(WORKER_INDEX)


def drop_worker_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute('DROP INDEX IF EXISTS "task_worker_idx"')


class Migration(migrations.Migration):

    dependencies = [
        ('workers', '0005_protocol'),
    ]

    operations = [
        migrations.RunPython(worker_index, drop_worker_index),
        migrations.AddIndex(
            model_name='task',
            index=models.Index(fields=['func_path', 'id'], name='task_func_path_idx'),
        ),
        migrations.AddIndex(
            model_name='task',
            index=models.Index(
                condition=models.Q(('priority', 0), _negated=True),
                fields=['priority', 'id'],
                name='task_priority_idx',
            ),
        ),
    ]

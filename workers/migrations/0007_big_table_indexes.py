# Indexes for 10 million task rows: the admin's worker, priority and search filters, and
# deleting an ended worker (the database checks Task.worker for each deleted worker row:
# without an index that is a full scan of the task table, per worker).
# Task.Meta must list the same three indexes (see the lead's note in the retention report).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('workers', '0005_protocol'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='task',
            index=models.Index(fields=['worker', 'id'], name='task_worker_idx'),
        ),
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

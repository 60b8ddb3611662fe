"""The task list's queued and scheduled tasks without reading every queued row (issue 9).

``task_queued_idx``: queued tasks by id with their run_after, so "queued, due now", newest
first, walks the newest queued tasks instead of sorting them all. ``task_scheduled_idx``:
queued tasks that have a run_after, by it, so "scheduled" is a range of the few that wait
(tasks without a run_after cost it nothing). ``task_failed_idx``: failed and cancelled
tasks by id, so their newest are found without walking every newer task (PostgreSQL's
plan for a state that the newest tasks are not in).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("workers", "0012_runs")]

    operations = [
        migrations.AddIndex(
            model_name="task",
            index=models.Index(condition=models.Q(("state", "QUEUED")),
                               fields=["id", "run_after"], name="task_queued_idx"),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(condition=models.Q(("run_after__isnull", False),
                                                  ("state", "QUEUED")),
                               fields=["run_after"], name="task_scheduled_idx"),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(condition=models.Q(("state__in", ["FAILED", "CANCELLED"])),
                               fields=["state", "id"], name="task_failed_idx"),
        ),
    ]

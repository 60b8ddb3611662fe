"""Reserved for the per-node memory and CPU budget, task estimates and limits (issue 10); filled in as the models land."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("workers", "0009_paused_queue")]

    operations: list[migrations.operations.base.Operation] = []

"""Reserved for runs of dependent tasks, resource locks (issue 11); filled in as the models land."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("workers", "0011_memory_learning")]

    operations: list[migrations.operations.base.Operation] = []

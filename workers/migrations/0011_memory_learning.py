"""Reserved for learned memory estimates from measured peaks (issue 10); filled in as the models land."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("workers", "0010_memory_scheduling")]

    operations: list[migrations.operations.base.Operation] = []

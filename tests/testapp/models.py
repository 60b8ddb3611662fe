from django.db import models


class Execution(models.Model):
    """One row each time a test task body runs, to count executions."""

    key = models.CharField(max_length=100, db_index=True)
    task_id = models.BigIntegerField(null=True)
    attempt = models.IntegerField(null=True)
    pid = models.IntegerField()
    at = models.FloatField()

    def __str__(self) -> str:
        return f"{self.key} by {self.pid}"

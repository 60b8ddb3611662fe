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


class Span(models.Model):
    """One execution of a chaos task's body: when it began, last showed life, and ended.

    Times are the executing process's ``time.time()``: every test process shares one host
    clock, except a worker run under libfaketime on purpose.
    """

    key = models.CharField(max_length=100, db_index=True)
    task_id = models.BigIntegerField(db_index=True)
    attempt = models.IntegerField()
    worker_id = models.BigIntegerField()
    pid = models.IntegerField()
    started = models.FloatField()
    seen = models.FloatField(help_text="Last sign of life; the end once ended.")
    ended = models.FloatField(null=True, help_text="Set when the body returned; never if killed.")

    def __str__(self) -> str:
        return f"{self.key} attempt {self.attempt} by {self.pid}"

"""A database outage: the worker backs off and reconnects, and no computed result is lost."""

from __future__ import annotations

import time

import pytest
from django.db import connection

from tests.conftest import wait_for
from tests.testapp.models import Execution
from workers.states import Outcome, TaskState

from .helpers import enqueue, running_workers, task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def _outage(allow: bool) -> None:
    """Refuse (or allow again) every connection to the test database, from outside it."""
    import psycopg

    db = connection.settings_dict
    with psycopg.connect(dbname="postgres", user=db["USER"] or "postgres",
                         host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432,
                         autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{db["NAME"]}" WITH ALLOW_CONNECTIONS {allow}')
        if not allow:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND application_name <> 'crucible-tests'",
                [db["NAME"]],
            )


@pytest.mark.skipif(
    "connection.vendor != 'postgresql'",
    reason="SQLite has no server connection to lose; the outage runs in the PostgreSQL pass",
)
def test_a_result_computed_during_an_outage_is_written_when_the_database_is_back(workers):
    with connection.cursor() as cursor:
        cursor.execute("SET application_name = 'crucible-tests'")  # spared by the outage
    job = enqueue("sleep_then_return", "outage", 1.5)
    workers.start()
    wait_for(lambda: Execution.objects.filter(key="outage:start").exists())
    try:
        _outage(allow=False)
        time.sleep(3.0)  # the task finishes while no connection can be made
    finally:
        _outage(allow=True)

    wait_for(lambda: task(job.pk).state == TaskState.SUCCEEDED, timeout=40)
    done = task(job.pk)
    assert done.result == "outage done"
    assert list(done.attempts.values_list("outcome", flat=True)) == [Outcome.SUCCEEDED]
    assert len(running_workers()) == 1, "the worker lived through the outage"
    assert "database unavailable" in workers.output(0)

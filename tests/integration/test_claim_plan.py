"""The claim walks its own index, whatever PostgreSQL's statistics of the table say.

PostgreSQL plans the hot path's prepared statements from the statistics of the moment.
Statistics taken while no task was queued (a farm whose tasks had all finished) made the
claim walk every queued task through another partial index and sort them, at every claim:
a sweep enqueued then was claimed in time quadratic in its size, until autovacuum
analysed the table again (after a tenth of its rows had changed).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection

from workers.queue import hotpath as claim

from .helpers import enqueue_many

pytestmark = pytest.mark.django_db(transaction=True)

# the parameters' types, as the worker binds them; their values do not change a generic plan
CLAIM_ARGS = "('node', 1, 60, 'default', 600, 'default', 'default', 600, 'default', 600)"
SUCCEED_AND_CLAIM_ARGS = ("('null', 0, 0, 1, 1, 1, 1, 1, 1, 'worker 1', now(), 0, '', NULL,"
                          " 'node', 'default', 600, 'default', 'default', 600, 'default', 600,"
                          " 1, 60)")


@pytest.fixture
def stale_statistics(crucible: Any) -> None:
    """Queued tasks the statistics do not know of: analysed when every task had ended."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's prepared plans; SQLite plans each statement when it runs")
    enqueue_many("add", [[i, i] for i in range(2000)])
    with connection.cursor() as cursor:
        cursor.execute("UPDATE workers_task SET state = 'SUCCEEDED'")
        cursor.execute("ANALYZE workers_task")
        cursor.execute("UPDATE workers_task SET state = 'QUEUED' WHERE id % 2 = 0")


def generic_plan(sql: str, args: str) -> str:
    """The plan PostgreSQL keeps for ``sql`` once it stops planning each execution anew."""
    numbered = sql.replace("%s", "{}").format(*(f"${n + 1}" for n in range(sql.count("%s"))))
    with connection.cursor() as cursor:
        cursor.execute("SET plan_cache_mode = force_generic_plan")
        try:
            cursor.execute(f"PREPARE claim_plan AS {numbered}")
            cursor.execute(f"EXPLAIN EXECUTE claim_plan{args}")
            rows: list[Any] = cursor.fetchall()
        finally:
            cursor.execute("DEALLOCATE claim_plan")  # not ALL: the hot path's own stay
            cursor.execute("RESET plan_cache_mode")
    return "\n".join(row[0] for row in rows)


def task_scans(plan: str) -> list[str]:
    """The scans of queued rows (aliases t, t_1, ...): the candidate's, and the look again
    at the head of the queue without locks (``hotpath._starved_ahead``)."""
    return [line.strip() for line in plan.splitlines()
            if re.search(r" on workers_task t(_\d+)? ", line)]


@pytest.mark.parametrize("statement", ["claim", "success and claim"])
def test_the_claim_walks_its_index_when_the_statistics_saw_no_queued_task(stale_statistics,
                                                                          statement):
    sql, args = ((claim._sql("postgresql", 1), CLAIM_ARGS) if statement == "claim" else
                 (claim._succeed_and_claim_sql(1), SUCCEED_AND_CLAIM_ARGS))

    scans = task_scans(generic_plan(sql, args))

    assert len(scans) == 3 and all("using task_claim_idx" in scan for scan in scans), scans

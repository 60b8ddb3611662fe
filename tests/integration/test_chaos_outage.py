"""A database outage longer than the lease, through a TCP proxy the test controls.

The workers reach PostgreSQL only through the proxy; the test keeps its own direct
connection. A worker that cannot renew its lease stops its task before the lease runs out,
so the task's next execution, once the database is back, never overlaps the first.
"""

from __future__ import annotations

import pytest
from django.db import connection

from tests.conftest import wait_for, worker_env
from tests.tcp_proxy import TcpProxy
from tests.testapp.chaos import enqueue, journal, overlaps
from workers.models import Task, Worker
from workers.states import TaskState, WorkerState

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

LEASE_TTL = 4
OVERSTAY = 2.0  # the outage lasts this long past the lease's end, by the database's clock


def _db_now() -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT extract(epoch FROM clock_timestamp())")
        return float(cursor.fetchone()[0])


def _lease_end(task_id: int) -> float:
    lease = Task.objects.get(pk=task_id).lease_expires_at
    assert lease is not None
    return lease.timestamp()


def _through(proxy: TcpProxy) -> str:
    db = connection.settings_dict
    return f"postgres://{db.get('USER') or 'postgres'}@127.0.0.1:{proxy.port}/{db['NAME']}"


@pytest.mark.skipif(
    "connection.vendor != 'postgresql'",
    reason="SQLite has no server connection to cut; the outage runs in the PostgreSQL pass",
)
def test_an_outage_longer_than_the_lease_stops_the_task_and_runs_it_again_after(workers,
                                                                                  runtime_dir):
    db = connection.settings_dict
    folder = runtime_dir / "journal"
    folder.mkdir()
    with TcpProxy(db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)) as proxy:
        env = worker_env(runtime_dir, DATABASE_URL=_through(proxy),
                         WORKER_LEASE_TTL=str(LEASE_TTL))
        workers.start(env=env)
        workers.start(env=env)
        wait_for(lambda: Worker.objects.filter(state=WorkerState.RUNNING).count() == 2,
                 timeout=30)
        # Attempt 1 would run for a minute; a later attempt for one second.
        job = enqueue("journaled", str(folder), 60, 1)
        wait_for(lambda: journal(folder))
        wait_for(lambda: Task.objects.get(pk=job.pk).state == TaskState.RUNNING)

        proxy.block("hang")
        try:
            lease_end = _lease_end(job.pk)
            wait_for(lambda: _db_now() > lease_end + OVERSTAY, timeout=LEASE_TTL + 10)
            assert _lease_end(job.pk) == lease_end, "nobody renewed during the outage"
        finally:
            proxy.unblock()
        wait_for(lambda: Task.objects.get(pk=job.pk).state == TaskState.SUCCEEDED, timeout=60)
        executions = sorted(journal(folder), key=lambda execution: execution[3])

    assert Task.objects.get(pk=job.pk).result == "journaled"
    assert [attempt for _, attempt, *_ in executions] == [1, 2], executions
    first = executions[0]
    assert first[5] is None, "the first execution was stopped, not run to its end"
    assert first[4] < lease_end, (
        f"the first execution showed life {first[4] - lease_end:.2f} s after its lease ended"
    )
    assert overlaps((task, start, seen) for task, _, _, start, seen, _ in executions) == []

"""Migration 0010's triggers, which kept each node's committed share in its row.

Migration 0014 drops them: the claim now sums its node's running tasks instead, so that
the workers of one node no longer take turns at one row (see ``workers.queue.hotpath``).

The triggers kept each node's committed share equal to its running tasks' needs.

A task entering RUNNING adds its ``memory_estimate_mb`` and ``cpus`` to its node's row
(``workers_node.committed_*``); leaving RUNNING by any path (a success, a failure, a cancel,
a reclaim, a requeue, a raw statement, a delete) takes them back, in the same transaction.
Lease renewals and progress writes do not fire them (the WHEN clauses).

Between 0010 and 0014 they were put back after every ``migrate``, since SQLite drops a
table's triggers when a migration rebuilds it.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

SHARE_CHANGED = (
    "(OLD.state = 'RUNNING' OR NEW.state = 'RUNNING') AND (OLD.state {ne} NEW.state"
    " OR OLD.node_id {ne} NEW.node_id OR OLD.memory_estimate_mb <> NEW.memory_estimate_mb"
    " OR OLD.cpus <> NEW.cpus)"
)
TAKE = (
    "UPDATE workers_node SET committed_mb = committed_mb - OLD.memory_estimate_mb,"
    " committed_cpus = committed_cpus - OLD.cpus WHERE id = OLD.node_id"
)
ADD = (
    "UPDATE workers_node SET committed_mb = committed_mb + NEW.memory_estimate_mb,"
    " committed_cpus = committed_cpus + NEW.cpus WHERE id = NEW.node_id"
)
COLUMNS = "state, node_id, memory_estimate_mb, cpus"
TRIGGERS = ("workers_task_share_update", "workers_task_share_insert",
            "workers_task_share_delete")

POSTGRES = [
    f"""CREATE OR REPLACE FUNCTION workers_task_node_share() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' AND OLD.state = 'RUNNING' AND OLD.node_id IS NOT NULL THEN
            {TAKE};
        END IF;
        IF TG_OP <> 'DELETE' AND NEW.state = 'RUNNING' AND NEW.node_id IS NOT NULL THEN
            {ADD};
        END IF;
        RETURN NULL;
    END $$""",
    *(f"DROP TRIGGER IF EXISTS {name} ON workers_task" for name in TRIGGERS),
    f"""CREATE TRIGGER workers_task_share_update AFTER UPDATE OF {COLUMNS} ON workers_task
    FOR EACH ROW WHEN ({SHARE_CHANGED.format(ne="IS DISTINCT FROM")})
    EXECUTE FUNCTION workers_task_node_share()""",
    """CREATE TRIGGER workers_task_share_insert AFTER INSERT ON workers_task
    FOR EACH ROW WHEN (NEW.state = 'RUNNING' AND NEW.node_id IS NOT NULL)
    EXECUTE FUNCTION workers_task_node_share()""",
    """CREATE TRIGGER workers_task_share_delete AFTER DELETE ON workers_task
    FOR EACH ROW WHEN (OLD.state = 'RUNNING' AND OLD.node_id IS NOT NULL)
    EXECUTE FUNCTION workers_task_node_share()""",
]
POSTGRES_DROP = [
    *(f"DROP TRIGGER IF EXISTS {name} ON workers_task" for name in TRIGGERS),
    "DROP FUNCTION IF EXISTS workers_task_node_share()",
]
SQLITE = [
    *(f"DROP TRIGGER IF EXISTS {name}" for name in TRIGGERS),
    f"""CREATE TRIGGER workers_task_share_update AFTER UPDATE OF {COLUMNS} ON workers_task
    FOR EACH ROW WHEN {SHARE_CHANGED.format(ne="IS NOT")}
    BEGIN
        {TAKE} AND OLD.state = 'RUNNING';
        {ADD} AND NEW.state = 'RUNNING';
    END""",
    f"""CREATE TRIGGER workers_task_share_insert AFTER INSERT ON workers_task
    FOR EACH ROW WHEN NEW.state = 'RUNNING' AND NEW.node_id IS NOT NULL
    BEGIN {ADD}; END""",
    f"""CREATE TRIGGER workers_task_share_delete AFTER DELETE ON workers_task
    FOR EACH ROW WHEN OLD.state = 'RUNNING' AND OLD.node_id IS NOT NULL
    BEGIN {TAKE}; END""",
]
SQLITE_DROP = [f"DROP TRIGGER IF EXISTS {name}" for name in TRIGGERS]


def _run(connection: BaseDatabaseWrapper, statements: list[str]) -> None:
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def install(connection: BaseDatabaseWrapper) -> None:
    """(Re)create the triggers; harmless when they are there already."""
    _run(connection, POSTGRES if connection.vendor == "postgresql" else SQLITE)


def uninstall(connection: BaseDatabaseWrapper) -> None:
    _run(connection, POSTGRES_DROP if connection.vendor == "postgresql" else SQLITE_DROP)

"""Scheduling by memory (issue 10): each node's budget and ledger, each task's estimate, CPUs
and limit, and the triggers that keep a node's committed share equal to its running tasks'."""

import django.db.models.deletion
import django.db.models.functions.datetime
from django.conf import settings
from django.db import migrations, models

UNFINISHED = ("WAITING", "QUEUED", "RUNNING")

# A task entering RUNNING adds its estimate and CPUs to its node's committed share; leaving
# RUNNING (any path, even a raw statement or a delete) takes them back, in the same
# transaction. Lease renewals and progress writes do not fire them (the WHEN clauses).
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

POSTGRES = [
    f"""CREATE FUNCTION workers_task_node_share() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP <> 'INSERT' AND OLD.state = 'RUNNING' AND OLD.node_id IS NOT NULL THEN
            {TAKE};
        END IF;
        IF TG_OP <> 'DELETE' AND NEW.state = 'RUNNING' AND NEW.node_id IS NOT NULL THEN
            {ADD};
        END IF;
        RETURN NULL;
    END $$""",
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
    "DROP TRIGGER IF EXISTS workers_task_share_update ON workers_task",
    "DROP TRIGGER IF EXISTS workers_task_share_insert ON workers_task",
    "DROP TRIGGER IF EXISTS workers_task_share_delete ON workers_task",
    "DROP FUNCTION IF EXISTS workers_task_node_share()",
]
SQLITE = [
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
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS workers_task_share_update",
    "DROP TRIGGER IF EXISTS workers_task_share_insert",
    "DROP TRIGGER IF EXISTS workers_task_share_delete",
]


def _run(schema_editor, statements):
    for statement in statements:
        schema_editor.execute(statement)


def add_triggers(apps, schema_editor):
    postgres = schema_editor.connection.vendor == "postgresql"
    _run(schema_editor, POSTGRES if postgres else SQLITE)


def drop_triggers(apps, schema_editor):
    postgres = schema_editor.connection.vendor == "postgresql"
    _run(schema_editor, POSTGRES_DROP if postgres else SQLITE_DROP)


def estimate_unfinished(apps, schema_editor):
    """Tasks queued before this migration get the estimate enqueue() would have given them."""
    Task = apps.get_model("workers", "Task")
    unfinished = Task.objects.filter(state__in=UNFINISHED)
    unfinished.filter(memory_mb__isnull=False).update(
        memory_estimate_mb=models.F("memory_mb"), memory_source="declared"
    )
    default_mb = settings.CRUCIBLE.memory_per_task_mb
    unfinished.filter(memory_mb__isnull=True).update(
        memory_estimate_mb=default_mb, memory_source="default"
    )


class Migration(migrations.Migration):
    dependencies = [("workers", "0009_paused_queue")]

    operations = [
        migrations.CreateModel(
            name="Node",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                           verbose_name="ID")),
                ("name", models.CharField(help_text="WORKER_NODE_ADDRESS.", max_length=255,
                                          unique=True)),
                ("memory_mb", models.PositiveIntegerField(
                    help_text="Budget for running tasks' estimates.")),
                ("cpus", models.PositiveIntegerField(help_text="Budget for running tasks' CPUs.")),
                ("committed_mb", models.IntegerField(default=0)),
                ("committed_cpus", models.IntegerField(default=0)),
                ("total_mb", models.PositiveIntegerField(default=0, help_text="Physical memory.")),
                ("measured", models.BooleanField(
                    default=True,
                    help_text="The budget follows free memory (WORKER_NODE_MEMORY_MB unset).")),
                ("updated_at", models.DateTimeField(
                    db_default=django.db.models.functions.datetime.Now())),
            ],
            options={"ordering": ["name"]},
        ),
        migrations.RemoveIndex(model_name="task", name="task_queued_memory_idx"),
        migrations.AddField(
            model_name="task", name="cpus", field=models.PositiveSmallIntegerField(db_default=1),
        ),
        migrations.AddField(
            model_name="task", name="memory_estimate_mb",
            field=models.PositiveIntegerField(db_default=0),
        ),
        migrations.AddField(
            model_name="task", name="memory_estimate_runs",
            field=models.PositiveIntegerField(
                db_default=0, help_text="Measured runs a learned estimate rests on."),
        ),
        migrations.AddField(
            model_name="task", name="memory_limit_mb",
            field=models.PositiveIntegerField(
                blank=True, help_text="Stopped when its processes grow past this.", null=True),
        ),
        migrations.AddField(
            model_name="task", name="memory_source",
            field=models.CharField(blank=True, db_default="",
                                   help_text="declared, learned or default.", max_length=8),
        ),
        migrations.AddField(
            model_name="task", name="node",
            field=models.ForeignKey(
                blank=True, db_constraint=False, db_index=False,
                help_text="The node whose budget the task's running attempt counts against.",
                null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+",
                to="workers.node"),
        ),
        migrations.AddIndex(
            model_name="task",
            index=models.Index(condition=models.Q(("state", "QUEUED")),
                               fields=["-memory_estimate_mb"], name="task_queued_estimate_idx"),
        ),
        migrations.RunPython(estimate_unfinished, migrations.RunPython.noop, elidable=True),
        migrations.RunPython(add_triggers, drop_triggers),
    ]

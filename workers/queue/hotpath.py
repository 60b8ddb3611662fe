"""The hot path in plain SQL: the claim, and the write of a success.

The claim is one short statement that hands the best queued task to a worker.

Highest priority first, FIFO within a priority, only due tasks of the worker's queues,
only tasks whose memory estimate and CPUs fit what the worker's node has left: its Node
row's budget minus the estimates of the tasks running there now, summed in the claim's
own statement (an index holds the running tasks by node).

Two claims on one node must not both take the last room. SQLite serialises writers
(IMMEDIATE transactions), so a conditional UPDATE ... RETURNING is enough. On PostgreSQL
a claim that could grow what the node holds first locks the node's row, in a transaction
of its own, and then claims in a new statement, whose snapshot sees every claim committed
before it. A busy worker's next claim, made in the same statement as its last success,
takes no lock when the next task needs no more than the one it just finished: the node
then holds no more than before, whatever other claims do meanwhile. When the next task
needs more, that statement records the success only, and the locked claim follows.

A task that does not fit is passed over, and a smaller one behind it may run; once a
passed-over task has waited WORKER_MEMORY_STARVATION_S (since it was due) and could fit
this node when emptier, the claim stops at it: nothing behind it starts here until it does
(on PostgreSQL also when another claim holds it locked: ``_starved_ahead``).
A task larger than the most a node can ever budget (a forced submission, or a default
estimate above a small machine) runs there only when nothing else does.
"""

from __future__ import annotations

import enum
import functools
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from .. import conf
from ..models import Node, PausedQueue, Task, TaskAttempt
from ..states import TASK_TRANSITIONS, TaskState, moves
from . import turn
from .clock import parse, sql_later, sql_now

if TYPE_CHECKING:
    from .holding import Holding

QUEUED, RUNNING, SUCCEEDED = (
    TaskState.QUEUED.value, TaskState.RUNNING.value, TaskState.SUCCEEDED.value
)
# The raw statements below make these moves; refuse them here if the state machine does not.
moves(TASK_TRANSITIONS, (QUEUED, RUNNING), (RUNNING, SUCCEEDED))

COLUMNS = ("id, attempt, func_path, args, kwargs, timeout, max_attempts, memory_mb,"
           " memory_limit_mb, priority, queue, created_at, started_at, memory_estimate_mb, cpus")
PG_COLUMNS = f"{COLUMNS}, last_attempted_at"


@dataclass(frozen=True, slots=True)
class ClaimedTask:
    """A task now held by one worker for one attempt; (worker_id, attempt) fences its writes."""

    id: int
    attempt: int
    worker_id: int
    func_path: str
    args: list[Any]
    kwargs: dict[str, Any]
    timeout: float
    max_attempts: int
    memory_mb: int | None
    started_at: datetime  # by the database's clock
    memory_limit_mb: int | None = None  # the task's own; WORKER_MEMORY_LIMIT_MB otherwise
    # What a Django @task's TaskResult shows, read by the claim so the executor need not.
    priority: int = 0
    queue: str = ""
    created_at: datetime | None = None
    first_started_at: datetime | None = None  # of its first attempt
    # Its share of the node while it runs: what its ending frees.
    memory_estimate_mb: int = 0
    cpus: int = 1
    # Claimed beside another (``holding``): its row knows it began only once it is written.
    held: bool = False

    def holds_at_least(self, other: ClaimedTask) -> bool:
        """Whether this task's share covers ``other``'s: taken on in the commit that ended
        ``other``, it leaves nothing of that share free."""
        return self.memory_estimate_mb >= other.memory_estimate_mb and self.cpus >= other.cpus

    def row_facts(self) -> dict[str, Any]:
        """What a Django @task's TaskResult shows of the row, as the claim read it: given to
        the executor with the task, so that it reads nothing back (``backends.execution``).
        The moments go as ISO text: pickled, three aware datetimes cost the supervisor more
        than the rest of the message (16 of 20 us) for every task, @task or not."""
        return {"priority": self.priority, "queue": self.queue,
                "created_at": _iso(self.created_at),
                "started_at": _iso(self.first_started_at),
                "last_attempted_at": _iso(self.started_at)}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _clock(vendor: str) -> tuple[str, str]:
    """The database's now, and now plus the lease (one ``%s``), in the hot path's SQL.

    On SQLite the database's clock is this process's: SQLite reads the clock in the
    process that runs the statement. There the moments are bound as parameters (the same
    clock), which keeps the write lock, and so every other worker, waiting less.
    """
    if vendor == "postgresql":
        return sql_now(vendor), sql_later(vendor)
    return "%s", "%s"


def _open_queues(queue_count: int) -> tuple[str, str]:
    """The claim's test of the worker's queues and its LIMIT, leaving paused queues out.

    With one queue (the common case) the pause is asked once, in the LIMIT, before any
    row is read: a paused queue of a million tasks costs one lookup, and an open one is
    walked through the claim index as before. With several queues each candidate row is
    asked (its queue's name is a primary-key lookup).
    """
    paused = connection.ops.quote_name(PausedQueue._meta.db_table)
    if queue_count == 1:
        limit = f"(CASE WHEN EXISTS (SELECT 1 FROM {paused} WHERE name = %s) THEN 0 ELSE 1 END)"
        return "queue = %s", limit
    placeholders = ", ".join(["%s"] * queue_count)
    each_open = f"NOT EXISTS (SELECT 1 FROM {paused} WHERE name = queue)"
    return f"queue IN ({placeholders}) AND {each_open}", "1"


def _limit_params(queues: list[str]) -> list[str]:
    return queues[:1] if len(queues) == 1 else []


def _node_cte(*, after_done: bool = False) -> str:
    """``n``: the worker's node (one ``%s``, its name): its budget, and what the tasks
    running there hold (an index holds the running tasks by node).

    ``after_done``, in PostgreSQL's success-and-claim statement: a row only once the
    success is recorded (``done``), so a claim joined to it is made only then, in as few
    plan nodes as the statement allows (it runs once per task). The share of the task just
    succeeded is free already (the statement's snapshot still sees it run), and
    ``done_mb``/``done_cpus`` tell what it held.
    """
    node_table = connection.ops.quote_name(Node._meta.db_table)
    task_table = connection.ops.quote_name(Task._meta.db_table)
    running = f"FROM {task_table} AS r WHERE r.state = '{RUNNING}' AND r.node_id = node.id"
    columns = "node.id, node.memory_mb, node.ceiling_mb, node.cpus"
    if not after_done:  # SQLite's too, which has no LATERAL
        used = ", ".join(f"(SELECT COALESCE(SUM(r.{column}), 0) {running}) AS {alias}"
                         for column, alias in (("memory_estimate_mb", "used_mb"),
                                               ("cpus", "used_cpus")))
        return f"n AS (SELECT {columns}, {used} FROM {node_table} AS node WHERE node.name = %s)"
    held = (f"LATERAL (SELECT COALESCE(SUM(r.memory_estimate_mb), 0) AS mb,"
            f" COALESCE(SUM(r.cpus), 0) AS cpus {running}) AS u")
    return (f"n AS (SELECT {columns}, u.mb - d.memory_estimate_mb AS used_mb,"
            " u.cpus - d.cpus AS used_cpus, d.memory_estimate_mb AS done_mb, d.cpus AS done_cpus"
            f" FROM done AS d LEFT JOIN {node_table} AS node ON node.name = %s"
            f" LEFT JOIN {held} ON TRUE)")


# Whether candidate ``t`` fits node ``n`` now: within what is left; or, a task larger than
# the node could ever budget (forced, or a default estimate above a small machine), when
# nothing runs there (and the budget is not nil: memory is not below the guard). No node
# row (a process that never registered one): nothing is accounted, everything fits.
FITS = (
    "COALESCE((t.memory_estimate_mb <= n.memory_mb - n.used_mb AND t.cpus <= n.cpus - n.used_cpus)"
    " OR (n.used_mb <= 0 AND n.used_cpus <= 0 AND n.memory_mb > 0"
    " AND (t.memory_estimate_mb > n.ceiling_mb AND t.memory_estimate_mb > n.memory_mb"
    " OR t.cpus > n.cpus)), TRUE)"
)
# Whether ``t`` has waited long enough to stop the tasks behind it, on a node it could fit.
CAN_FIT = "t.memory_estimate_mb <= n.memory_mb AND t.cpus <= n.cpus"


def _starved_before(vendor: str) -> str:
    """The moment (one ``%s``: seconds on PostgreSQL, the moment on SQLite) before which a
    task that became due has waited too long to be overtaken."""
    if vendor == "postgresql":
        return "(now() - %s * interval '1 second')"
    return "%s"


def _waited_too_long(vendor: str) -> str:
    """Whether task ``t`` became due before ``_starved_before``."""
    return f"COALESCE(t.run_after, t.created_at) <= {_starved_before(vendor)}"


def _due(vendor: str, queue_count: int) -> tuple[str, str]:
    """Whether task ``t`` is due in one of the worker's open queues, and the LIMIT that
    leaves a paused queue out (``_open_queues``)."""
    open_queues, limit = _open_queues(queue_count)
    now, _ = _clock(vendor)
    return (f"t.state = '{QUEUED}' AND {open_queues}"
            f" AND (t.run_after IS NULL OR t.run_after <= {now})", limit)


def _head(vendor: str, queue_count: int, join: str = "LEFT JOIN n ON TRUE") -> str:
    """The due tasks of the worker's queues, in claim order, that fit node ``n`` or have
    waited so long that a claim stops at them (``FROM`` to ``ORDER BY``; no node row:
    nothing is accounted, everything fits)."""
    table = connection.ops.quote_name(Task._meta.db_table)
    due, _ = _due(vendor, queue_count)
    return (f"FROM {table} AS t {join}"
            f" WHERE {due} AND ({FITS} OR ({_waited_too_long(vendor)} AND {CAN_FIT}))"
            " ORDER BY t.priority DESC, t.id ASC")


def _candidate(vendor: str, queue_count: int, *, handing_over: bool = False) -> str:
    """The first due task of the worker's queues, in claim order, that fits the node or
    has waited so long that the claim stops at it; ``fits`` tells which. ``handing_over``
    (PostgreSQL's success-and-claim): only once the success is recorded, and ``small``
    tells whether it needs no more than the task just succeeded (``done``)."""
    _, limit = _due(vendor, queue_count)
    lock = " FOR UPDATE OF t SKIP LOCKED" if vendor == "postgresql" else ""
    if not handing_over:
        return f"SELECT t.id, t.priority, {FITS} AS fits {_head(vendor, queue_count)}" + (
            f" LIMIT {limit}{lock}")
    # n has a row only once the success is recorded
    small = "t.memory_estimate_mb <= n.done_mb AND t.cpus <= n.done_cpus AS small"
    return (f"SELECT t.id, t.priority, {FITS} AS fits, {small}"
            f" {_head(vendor, queue_count, 'CROSS JOIN n')} LIMIT {limit}{lock}")


# How many rows at the head of the queue a claim reads, without locks, when its candidate
# is not the first: more than the claims that can hold a row there at one moment.
PASSED_LOOK = 32


def _starved_ahead(queue_count: int) -> str:
    """PostgreSQL: whether a task that has waited too long, and does not fit now, is due
    ahead of candidate ``c`` (its ``%s``, twice: the worker's queues and the starvation
    bound; ``_starved_ahead_params``).

    The candidate's SKIP LOCKED passes over the rows other claims are looking at, and a
    claim that stopped at a starved task holds it locked until it commits: a claim made
    meanwhile would take a smaller task behind it. So the head of the queue is read
    again without locks (the candidate's walk of the claim index): when the candidate is
    not its first row, the first PASSED_LOOK rows are looked at for a starved one ahead.
    A starved task that fits now is not waited for: the claim holding it takes it (or,
    handing over to it from a smaller task, claims it next under the node's lock).
    """
    head = _head("postgresql", queue_count)  # a paused queue's candidate is none
    first = f"SELECT t.id {head} LIMIT 1"
    looked = f"SELECT t.id, t.priority, NOT {FITS} AS waits {head} LIMIT {PASSED_LOOK}"
    return (
        f"CASE WHEN c.id = ({first}) THEN FALSE ELSE EXISTS (SELECT 1 FROM ({looked}) AS a"
        " WHERE a.waits AND (a.priority > c.priority OR a.priority = c.priority AND a.id < c.id))"
        " END"
    )


def _starved_ahead_params(queues: list[str], starvation: float) -> list[Any]:
    return [*queues, starvation] * 2


def _claim_update(vendor: str, chosen: str) -> str:
    """The claim's UPDATE of the task whose id ``chosen`` selects, on node ``n``."""
    table = connection.ops.quote_name(Task._meta.db_table)
    now, lease_end = _clock(vendor)
    # The chosen row is still QUEUED when the UPDATE runs: PostgreSQL holds its row lock,
    # SQLite holds the database's write lock. Repeating the state test in the outer WHERE
    # made PostgreSQL scan every queued row through the state index.
    columns = PG_COLUMNS if vendor == "postgresql" else COLUMNS
    return (
        f"UPDATE {table} SET state = '{RUNNING}', worker_id = %s, attempt = attempt + 1,"
        " node_id = (SELECT id FROM n), held = FALSE,"
        f" lease_expires_at = {lease_end}, last_attempted_at = {now},"
        f" started_at = COALESCE(started_at, {now}),"
        " progress = NULL, progress_message = '', cancel_requested_at = NULL"
        f" WHERE id = ({chosen}) RETURNING {columns}"
    )


@functools.cache
def _sql(vendor: str, queue_count: int) -> str:
    clear = f" AND NOT ({_starved_ahead(queue_count)})" if vendor == "postgresql" else ""
    chosen = f"SELECT c.id FROM ({_candidate(vendor, queue_count)}) AS c WHERE c.fits{clear}"
    return f"WITH {_node_cte()} {_claim_update(vendor, chosen)}"


@functools.cache
def _any_due_sql(vendor: str, queue_count: int) -> str:
    """Whether any task of the worker's open queues is due: on PostgreSQL an idle poll's
    first look (no lock, no transaction); on SQLite the moment is bound (``_clock``)."""
    table = connection.ops.quote_name(Task._meta.db_table)
    due, limit = _due(vendor, queue_count)
    return f"SELECT EXISTS (SELECT 1 FROM {table} AS t WHERE {due} LIMIT {limit})"


def any_due(queues: list[str]) -> bool:
    """Whether a task of ``queues`` is due now (whether or not it fits this node)."""
    db = _db()
    moment = [] if db.vendor == "postgresql" else [
        db.ops.adapt_datetimefield_value(datetime.now(UTC))]
    with hot_cursor(db) as cursor:
        cursor.execute(_any_due_sql(db.vendor, len(queues)),
                       [*queues, *moment, *_limit_params(queues)])
        return bool(cursor.fetchone()[0])


@functools.cache
def _lock_sql() -> str:
    """PostgreSQL: lock the node's row (one ``%s``, its name) until the claim commits."""
    node_table = connection.ops.quote_name(Node._meta.db_table)
    return f"SELECT id FROM {node_table} WHERE name = %s FOR NO KEY UPDATE"


def _claim_params(db: BaseDatabaseWrapper, worker_id: int, queues: list[str],
                  lease_ttl: float, now: datetime, *, node: str) -> list[Any]:
    starvation = conf.get().memory_starvation_s
    if db.vendor == "postgresql":
        return [node, worker_id, lease_ttl, *queues, starvation, *_limit_params(queues),
                *_starved_ahead_params(queues, starvation)]
    adapt = db.ops.adapt_datetimefield_value
    at = adapt(now)
    return [node, worker_id, adapt(now + timedelta(seconds=lease_ttl)), at, at, *queues, at,
            adapt(now - timedelta(seconds=starvation)), *_limit_params(queues)]


@contextmanager
def hot_cursor(db: BaseDatabaseWrapper) -> Iterator[CursorWrapper]:
    """A cursor for the hot path's few fixed statements.

    On PostgreSQL they are prepared on the server: Django binds parameters on the client
    and re-plans every statement, which was half of PostgreSQL's work per task. Only these
    statements are prepared, so the rest of Django keeps its defaults.
    WORKER_PREPARED_STATEMENTS=false turns this off (PgBouncer before 1.21 in transaction
    pooling mode cannot keep prepared statements).
    """
    if db.vendor != "postgresql" or not conf.get().prepared_statements:
        with db.cursor() as cursor:
            yield cursor
        return
    from .prepared import prepared_cursor

    with prepared_cursor(db) as cursor:
        yield cursor


def _loads(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _claimed(row: tuple[Any, ...], worker_id: int, now: datetime, *, held: bool = False
             ) -> ClaimedTask:
    (task_id, attempt, func_path, args, kwargs, timeout, max_attempts, memory_mb, limit,
     priority, queue, created, first_started, estimate, cpus, *rest) = row
    started = rest[0] if rest else now
    return ClaimedTask(
        id=task_id,
        attempt=attempt,
        worker_id=worker_id,
        func_path=func_path,
        args=_loads(args),
        kwargs=_loads(kwargs),
        timeout=timeout,
        max_attempts=max_attempts,
        memory_mb=memory_mb,
        started_at=parse(started),
        memory_limit_mb=limit,
        priority=priority,
        queue=queue,
        created_at=parse(created),
        first_started_at=None if first_started is None else parse(first_started),
        memory_estimate_mb=estimate or 0,
        cpus=cpus,
        held=held,
    )


def _db() -> BaseDatabaseWrapper:
    """The connection behind Django's thread-local proxy: looked up once per call, since
    each attribute read through the proxy costs a context-local lookup."""
    return connections[DEFAULT_DB_ALIAS]


class Empty(enum.Enum):
    """Why a claim found nothing."""

    NOTHING_DUE = "nothing due"
    NOT_FITTING = "not fitting"  # a task was due, none fitted (or a peer took the last)
    UNKNOWN = "unknown"  # not asked: a success-and-claim that found nothing


def claim(worker_id: int, queues: list[str], lease_ttl: float, node: str, *,
          look_first: bool = True) -> ClaimedTask | None:
    """Hand the best due task of ``queues`` that fits ``node`` to the worker, leased until
    the database's now + ``lease_ttl``.

    ``look_first`` (PostgreSQL): ask whether anything is due before locking the node's
    row, so that a poll that finds nothing is one statement; a worker woken by an enqueue,
    or that knows a task waits, claims at once.
    """
    found = look_and_claim(worker_id, queues, lease_ttl, node, look_first=look_first)
    return found if isinstance(found, ClaimedTask) else None


def look_and_claim(worker_id: int, queues: list[str], lease_ttl: float, node: str, *,
                   look_first: bool = True) -> ClaimedTask | Empty:
    """``claim``, saying why it found nothing (an idle worker blocked by memory or CPUs
    asks to be woken when a task of its node ends: see ``runtime.supervisor``). A claim
    that looked first knows; one that did not asks once more, only when it found nothing."""
    db = _db()
    now = datetime.now(UTC)  # used on SQLite only, whose clock this is
    params = _claim_params(db, worker_id, queues, lease_ttl, now, node=node)
    looked = db.vendor == "postgresql" and look_first
    with hot_cursor(db) as cursor:
        if looked:
            cursor.execute(_any_due_sql(db.vendor, len(queues)),
                           [*queues, *_limit_params(queues)])
            if not cursor.fetchone()[0]:
                return Empty.NOTHING_DUE
        if db.vendor == "postgresql":
            row = _locked_claim(db, cursor, node, _sql(db.vendor, len(queues)), params)
        else:
            cursor.execute(_sql(db.vendor, len(queues)), params)
            row = cursor.fetchone()
    if row is not None:
        return _claimed(row, worker_id, now)
    return Empty.NOT_FITTING if looked or any_due(queues) else Empty.NOTHING_DUE


def _locked_claim(db: BaseDatabaseWrapper, cursor: CursorWrapper, node: str, sql: str,
                  params: list[Any]) -> tuple[Any, ...] | None:
    """PostgreSQL: lock the node's row, then claim, in one round trip.

    The two statements are pipelined: they share the transaction that ends at the
    pipeline's one sync (or the caller's, inside ``atomic``), so the node's row stays
    locked until the claim commits, and the claim, a statement of its own, sees every
    claim committed before the lock was granted. The claimed row is read after the sync:
    read inside the pipeline, it cost a round trip of its own before the commit's.
    """
    with db.wrap_database_errors:
        with db.connection.pipeline():
            cursor.execute(_lock_sql(), [node])
            cursor.execute(sql, params)
        row: tuple[Any, ...] | None = cursor.fetchone()
    return row


@functools.cache
def _success_sql(vendor: str, *, without_dependents: bool = False, held: bool = False) -> str:
    """``held`` (SQLite): a task claimed beside another also records when it began (two
    ``%s`` after the result's)."""
    task_table = connection.ops.quote_name(Task._meta.db_table)
    result = "CAST(%s AS jsonb)" if vendor == "postgresql" else "%s"
    only = " AND NOT has_dependents" if without_dependents else ""
    now, _ = _clock(vendor)
    finished = ", finished_at" if vendor == "postgresql" else ""
    if without_dependents:  # the success-and-claim statement frees this task's share
        finished += ", node_id, cpus"
    began = (" started_at = COALESCE(started_at, %s), last_attempted_at = %s, held = FALSE,"
             if held else "")
    return (
        f"UPDATE {task_table} SET state = '{SUCCEEDED}', result = {result},{began}"
        f" finished_at = {now}, lease_expires_at = NULL, progress = 1.0,"
        " peak_rss_bytes = CASE WHEN peak_rss_bytes IS NULL OR peak_rss_bytes < %s"
        " THEN %s ELSE peak_rss_bytes END"
        f" WHERE id = %s AND worker_id = %s AND attempt = %s AND state = '{RUNNING}'{only}"
        f" RETURNING has_dependents, memory_estimate_mb, memory_limit_mb{finished}"
    )


ATTEMPT_COLUMNS = (
    "task_id, number, worker_id, worker_label, started_at, finished_at, outcome, error,"
    " exception_class, traceback, peak_rss_bytes, log_tail, memory_estimate_mb, memory_limit_mb"
)


@functools.cache
def _attempt_sql() -> str:
    attempt_table = connection.ops.quote_name(TaskAttempt._meta.db_table)
    return (
        f"INSERT INTO {attempt_table} ({ATTEMPT_COLUMNS})"
        f" VALUES (%s, %s, %s, %s, %s, %s, '{SUCCEEDED}', '', '', '', %s, %s, %s, %s)"
    )


def _ran_with(estimate: int | None, limit: int | None) -> list[int | None]:
    """What the attempt's row records it ran with: its estimate, and its limit (the task's
    own, else WORKER_MEMORY_LIMIT_MB; 0 is none)."""
    return [estimate or None, limit or conf.get().memory_limit_mb or None]


@dataclass(frozen=True, slots=True)
class Recorded:
    """A success written: whether other tasks wait on this one (to be released)."""

    has_dependents: bool


def record_success(token: ClaimedTask, payload: str, peak: int | None,
                   log_tail: str) -> Recorded | None:
    """The success write: one fenced UPDATE and the attempt's row, in the caller's transaction.

    None means the attempt was no longer this worker's. ``has_dependents`` is read under
    the row's lock, so a dependent linked while this task ran is never missed.
    """
    db = _db()
    adapt = db.ops.adapt_datetimefield_value
    now = datetime.now(UTC)  # used on SQLite only, whose clock this is
    params = _success_params(token, payload, peak)
    if db.vendor != "postgresql":
        params[1:1] = [*_began(token, adapt), adapt(now)]
    with hot_cursor(db) as cursor:
        cursor.execute(_success_sql(db.vendor, held=token.held), params)
        row = cursor.fetchone()
        if row is None:
            return None
        has_dependents, estimate, limit, *rest = row
        finished = rest[0] if rest else now
        cursor.execute(_attempt_sql(), [*_attempt_params(token, finished, peak, log_tail, adapt),
                                        *_ran_with(estimate, limit)])
    return Recorded(has_dependents=bool(has_dependents))


type Adapt = Callable[[datetime | None], Any]  # the backend's adapt_datetimefield_value


def _success_params(token: ClaimedTask, payload: str, peak: int | None) -> list[Any]:
    """``payload``: the result's JSON text, already made storable (``storable.dumps``)."""
    return [payload, peak, peak, token.id, token.worker_id, token.attempt]


def _began(token: ClaimedTask, adapt: Adapt) -> list[Any]:
    """A held task's moment of beginning, twice (``_success_sql``'s ``held``); else none."""
    return [adapt(token.started_at)] * 2 if token.held else []


def _attempt_params(token: ClaimedTask, finished: Any, peak: int | None,
                    log_tail: str, adapt: Adapt) -> list[Any]:
    if isinstance(finished, datetime):
        finished = adapt(finished)
    return [token.id, token.attempt, token.worker_id, f"worker {token.worker_id}",
            adapt(token.started_at), finished, peak, log_tail]


@functools.cache
def _succeed_and_claim_sql(queue_count: int) -> str:
    attempt_table = connection.ops.quote_name(TaskAttempt._meta.db_table)
    chosen = "SELECT id FROM checked WHERE fits AND small AND clear"
    return (
        f"WITH done AS ({_success_sql('postgresql', without_dependents=True)}),"
        f" logged AS (INSERT INTO {attempt_table} ({ATTEMPT_COLUMNS})"
        f" SELECT %s, %s, %s, %s, %s, finished_at, '{SUCCEEDED}', '', '', '', %s, %s,"
        " NULLIF(memory_estimate_mb, 0), COALESCE(memory_limit_mb, %s) FROM done"
        " RETURNING task_id),"
        f" {_node_cte(after_done=True)},"
        f" candidate AS ({_candidate('postgresql', queue_count, handing_over=True)}),"
        " checked AS (SELECT c.id, c.fits, c.small,"
        f" NOT ({_starved_ahead(queue_count)}) AS clear FROM candidate AS c),"
        f" next AS ({_claim_update('postgresql', chosen)})"
        " SELECT (SELECT count(*) FROM logged),"
        " (SELECT count(*) FROM checked WHERE fits AND NOT (small AND clear)),"
        f" {PG_COLUMNS} FROM (SELECT 1) AS one LEFT JOIN next ON true"
    )


@dataclass(frozen=True, slots=True)
class Handover:
    """A success to record and what the next claim needs: the success-and-claim's input."""

    token: ClaimedTask
    payload: str  # the result's JSON text, already made storable
    peak: int | None
    log_tail: str
    queues: list[str]
    lease_ttl: float
    node: str


# A database's success-and-claim in one commit: (recorded, the next task). Not recorded
# means not written: the attempt is no longer ours, or others depend on it.
type OneCommit = Callable[[Handover], tuple[bool, ClaimedTask | None]]


@functools.cache
def qmark(sql: str) -> str:
    """SQLite's placeholders: Django's SQLite cursor rewrites ``%s`` with a regular
    expression on every call; the hot path's few fixed statements are rewritten once."""
    return re.sub(r"(?<!%)%s", "?", sql).replace("%%", "%")


def succeed_and_claim_sqlite(done: Handover) -> tuple[bool, ClaimedTask | None]:
    """SQLite: record a success and claim the next task in one IMMEDIATE transaction."""
    recorded, claimed = succeed_all_and_claim_sqlite(
        [Recordable(done.token, done.payload, done.peak, done.log_tail)],
        NextClaim(done.token.worker_id, done.queues, done.lease_ttl, done.node),
    )
    return recorded[0], claimed[0] if claimed else None


@dataclass(frozen=True, slots=True)
class Recordable:
    """A success to write: its result's JSON text, already made storable."""

    token: ClaimedTask
    payload: str
    peak: int | None
    log_tail: str


@dataclass(frozen=True, slots=True)
class NextClaim:
    """What the claim that follows successes needs; ``holding``: what it may hold beside
    the task it claims (``holding.Holding``; SQLite only)."""

    worker_id: int
    queues: list[str]
    lease_ttl: float
    node: str
    holding: Holding | None = None


def succeed_all_and_claim_sqlite(done: list[Recordable], after: NextClaim
                                 ) -> tuple[list[bool], list[ClaimedTask]]:
    """SQLite: record successes and claim the next task (and the short tasks held beside
    it) in one IMMEDIATE transaction; which successes were written, and what was claimed.

    Workers queue for SQLite's write lock, and one that finds it taken sleeps at least a
    millisecond, so the lock is held for the statements only: every parameter is made
    before it is taken and the claimed rows are read after it is let go. The statements
    go to SQLite's own cursor (Django's wrapper would rewrite each one's placeholders),
    inside Django's error mapping. A task others depend on is not recorded here (False,
    nothing written), as on PostgreSQL: the caller's transactional path releases them, and
    claims, as it does after a success that is no longer this worker's (nothing claimed).
    """
    from . import holding

    db = _db()
    db.ensure_connection()
    adapt = db.ops.adapt_datetimefield_value
    now = datetime.now(UTC)  # SQLite's clock is this process's
    at = adapt(now)
    writes = [_sqlite_success(one, at, adapt) for one in done]
    worker_id = after.worker_id
    claim_params = _claim_params(db, worker_id, after.queues, after.lease_ttl, now,
                                 node=after.node)
    claim_sql = qmark(_sql("sqlite", len(after.queues)))
    hold = holding.plan(after, worker_id, now, adapt)
    raw = db.connection
    recorded: list[bool] = []
    rows: list[tuple[Any, ...]] = []
    with db.wrap_database_errors:
        held = turn.take()
        cursor = raw.cursor()
        try:
            cursor.execute("BEGIN IMMEDIATE")
            for success_sql, success, attempt in writes:
                written = cursor.execute(success_sql, success).fetchone()
                recorded.append(written is not None)
                if written is not None:
                    _, estimate, limit, *_ = written
                    cursor.execute(qmark(_attempt_sql()), [*attempt, *_ran_with(estimate, limit)])
            if all(recorded):
                head = cursor.execute(claim_sql, claim_params).fetchone()
                rows = [] if head is None else [head, *hold(cursor, head)]
            cursor.execute("COMMIT")
        except BaseException:
            if raw.in_transaction:
                raw.rollback()
            raise
        finally:
            cursor.close()
            turn.let_go(held)
    return recorded, [_claimed(row, worker_id, now, held=index > 0)
                      for index, row in enumerate(rows)]


def _sqlite_success(one: Recordable, at: Any, adapt: Adapt) -> tuple[str, list[Any], list[Any]]:
    """One success's statement and parameters on SQLite, and its attempt row's."""
    token = one.token
    success = _success_params(token, one.payload, one.peak)
    success[1:1] = [*_began(token, adapt), at]
    sql = qmark(_success_sql("sqlite", without_dependents=True, held=token.held))
    return sql, success, _attempt_params(token, at, one.peak, one.log_tail, adapt)


def succeed_and_claim_pg(done: Handover) -> tuple[bool, ClaimedTask | None]:
    """PostgreSQL: record a success and claim the next task in one statement.

    Data-modifying CTEs all run, referenced or not, in one implicit transaction: a busy
    worker needs one round trip and one commit per task, and takes no lock while the next
    task needs no more memory and CPUs than the last. A larger one is claimed after the
    success's commit, under the node's lock (``claim``). A task others depend on is not
    recorded here (False, and nothing claimed): its dependents are released in the same
    transaction as its success, by the caller's slower path.
    """
    db = _db()
    adapt = db.ops.adapt_datetimefield_value
    token, queues = done.token, done.queues
    starvation = conf.get().memory_starvation_s
    params = [
        *_success_params(token, done.payload, done.peak),
        token.id, token.attempt, token.worker_id, f"worker {token.worker_id}",
        adapt(token.started_at), done.peak, done.log_tail, conf.get().memory_limit_mb or None,
        done.node, *queues, starvation, *_limit_params(queues),
        *_starved_ahead_params(queues, starvation), token.worker_id, done.lease_ttl,
    ]
    with hot_cursor(db) as cursor:
        cursor.execute(_succeed_and_claim_sql(len(queues)), params)
        row = cursor.fetchone()
    assert row is not None
    recorded, larger = row[0] == 1, row[1] == 1
    if row[2] is not None:
        return recorded, _claimed(row[2:], token.worker_id, token.started_at)
    if larger:  # the next task needs more than this one held: claim it under the node's lock
        return recorded, claim(token.worker_id, queues, done.lease_ttl, done.node,
                               look_first=False)
    return recorded, None

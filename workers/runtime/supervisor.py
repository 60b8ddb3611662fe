"""The worker process: claim, hand to the executor, watch, record; never blocks on a task.

One thread, one select loop: wake-ups (doorbell, LISTEN, signals), the executor's messages
and output, and timers (lease renewal, heartbeat, tick, deadlines, polls). Database writes
that fail wait in an outbox and are retried with backoff, so a computed result is never
dropped.

An idle worker claims only when woken (a task arrived in one of its queues) or once per
WORKER_POLL_INTERVAL. A running task's lease is renewed every WORKER_LEASE_RENEW_INTERVAL;
a worker that cannot renew in time stops the task itself before the lease can end, and a
sentinel process does so even if this process is frozen (see :mod:`.sentinel`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connection

from .. import conf, queue
from ..exceptions import LostAttempt
from ..pool import budget, lifecycle, monitor, processes, stamps
from ..pool.lifecycle import Control
from ..queue import doorbell
from ..queue.doorbell import Doorbell
from ..queue.holding import Holding
from ..queue.hotpath import ClaimedTask, Empty
from ..states import Outcome, WorkerState
from . import djangolog, logs, memory
from . import executor as executor_mod
from .bundle import Bundle, began_at
from .meter import Meter
from .outbox import Begin, Failure, Progress, Release, Success, Successes, Write, instead, tokens
from .relay import Relay
from .sentinel import Sentinel
from .wake import Listener, listener_for_database

logger = logging.getLogger(__name__)
task_log = logging.getLogger("workers.task")
T = TypeVar("T")
DB_ERRORS = (OperationalError, InterfaceError)
PROGRESS_EVERY = 0.5
SAMPLE_EVERY = 1.0
MAX_DB_BACKOFF = 30.0
PROBE_EVERY_BEATS = 2  # the LISTEN connection: the main one proves itself every beat
TAIL_CHARS = queue.TAIL_CHARS
EXIT_ABORTED = 1  # after an operator's abort; after a signal's, 128 + its number
TAIL_KEEP = 4 * TAIL_CHARS  # room to cut the stored tail at a line boundary
OPERATOR_DRAIN = "drained by operator"
BLOCKED_JOB = "blocked"  # the node's stamp: a worker of it found a due task that did not fit
BLOCKED_LOOK_EVERY = 0.05  # seconds: how often a busy worker reads that stamp
BLOCKED_ENQUEUE_LOOK = 0.05  # seconds: a blocked worker's look after an enqueue, at most so often
LOOK_SHARED_FOR = 0.9  # of WORKER_POLL_INTERVAL: a peer's empty look at the queue stands
BATCH_FIRST_LOOK = 0.02  # seconds: a batch worker that found nothing, with tasks left


class _DatabaseDown:
    pass


DOWN = _DatabaseDown()


@dataclass(frozen=True, slots=True)
class Options:
    queues: list[str]
    max_tasks: int | None = None
    batch: bool = False


@dataclass
class Lease:
    """The running attempt's lease as this worker can know it, on its monotonic clock.

    ``sent_at`` is when the claim or the last successful renewal was sent: the database's
    deadline is at least a TTL after it (clocks run at about the same rate; their offset
    does not matter). The sentinel kills the task ``margin`` before that; the supervisor
    stops it a little earlier still, so that it can say why.
    """

    sent_at: float
    ttl: float
    margin: float
    renew_every: float

    @property
    def kill_at(self) -> float:
        return self.sent_at + self.ttl - self.margin

    @property
    def stop_at(self) -> float:
        return self.kill_at - min(1.0, self.margin / 2)

    @property
    def renew_at(self) -> float:
        return self.sent_at + self.renew_every


@dataclass
class Running:
    """The attempt in flight."""

    token: ClaimedTask
    deadline: float
    lease: Lease
    renew_retry_at: float = 0.0
    tail: str = ""
    peak_rss: int = 0
    progress: tuple[float | None, str] | None = None
    progress_sent_at: float = 0.0
    stopped: queue.Ending | None = None  # set when the supervisor stopped it on purpose
    log: logs.AttemptLog | None = None  # this attempt's own output, in a file of its own
    limit: int | None = None  # bytes its process tree may hold; None: no limit
    oom_kills: int | None = None  # the kernel's OOM-kill count when it started

    def log_tail(self) -> str:
        return logs.clip(self.tail, TAIL_CHARS)


@dataclass
class Timers:
    heartbeat: float = 0.0
    tick: float = 0.0
    control: float = 0.0
    sample: float = 0.0
    memory: float = 0.0
    poll: float = 0.0


@dataclass
class Supervisor:
    worker_id: int
    options: Options
    settings: conf.WorkerSettings = field(default_factory=conf.get)

    def __post_init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.meter = Meter()
        self.running: Running | None = None
        self.executor: executor_mod.Executor | None = None
        self.outbox: list[Write] = []
        self.stop_reason = ""
        self.abort_reason = ""
        self.exit_code = 0  # what the process exits with: 0 when it ended as asked
        self.counts = [0, 0]  # succeeded, failed
        self.finished = 0
        self.db_backoff = 0.0
        self.db_retry_at = 0.0
        self.timers = Timers()
        self.term_signals = 0
        self.doorbell: Doorbell | None = None
        self.listener: Listener | None = None
        self.relay: Relay | None = None  # PostgreSQL: listening for this machine's workers
        self.sentinel: Sentinel | None = None
        self.want_claim = True  # woken, polled, or just finished a task
        self.enqueued = False  # woken by an enqueue: claim without looking first
        self.batch_look = BATCH_FIRST_LOOK  # a batch worker's next look while tasks are left
        self.claim_uncertain = False  # a claim's reply was lost: release what it may hold
        self.marked_draining = False
        self.beats = 0
        self.retry_due = math.inf  # when a task this worker failed may be retried
        # Idle workers of one node serving the same queues share their empty looks.
        self.look_job = "look:" + "\0".join(sorted(self.options.queues))
        self.empty: Empty = Empty.UNKNOWN  # why the last claim found nothing
        self.blocked = False  # a due task did not fit: woken when a task of the node ends
        self.node_blocked = False  # a worker of this node was, when last looked at
        self.blocked_look_at = 0.0
        self.enqueue_look_at = math.inf  # a blocked worker's next look, after an enqueue
        self.bundle: Bundle | None = None  # short tasks claimed together, in flight
        self.short: set[str] = set()  # functions whose last run here was short

    # -- setup and teardown ---------------------------------------------------------------

    def start(self) -> None:
        """Fork the executor, open the wake-up channels, and tell everyone we run."""
        processes.become_subreaper()
        self.sentinel = Sentinel.start()
        self._start_executor()
        self.doorbell = Doorbell(self.worker_id)
        self.selector.register(self.doorbell, selectors.EVENT_READ, self._on_doorbell)
        self._listen()
        self._trap_signals()
        lifecycle.mark_running(self.worker_id, self.doorbell.path)
        # The first claim comes before the node's housekeeping: a pool started on a full
        # queue serves at once, and the tick (others' leases, samples, pruning) follows.
        self.timers.tick = time.monotonic() + self.settings.tick_interval / 2
        logger.info("worker %s running on queues %s", self.worker_id, self.options.queues)

    def run(self) -> str:
        """Serve until drained, aborted or done; return the reason."""
        while not self._done():
            self._step()
        return self.abort_reason or self.stop_reason

    def close(self) -> None:
        if self.executor is not None:
            self._stop_executor(graceful=True)
        if self.doorbell is not None:
            self.doorbell.close()
        if self.listener is not None:
            self.listener.close()
        if self.relay is not None and self.relay.relays:
            self.relay.close()
            doorbell.ring_local(doorbell.RELAY)  # another worker here listens in its place
        if self.sentinel is not None:
            self.sentinel.close()

    def _listen(self) -> None:
        self.listener = listener_for_database(self.worker_id)
        if self.listener is None:
            return
        self.relay = Relay(self.options.queues, self.worker_id)
        self._take_relay()
        if self.listener.conn is not None:
            self.selector.register(self.listener, selectors.EVENT_READ, self._on_listener)

    def _take_relay(self) -> None:
        """Listen on the queues' channels for this machine's workers of these queues, if
        none does (PostgreSQL, ``runtime.relay``)."""
        if self.relay is None or self.relay.held or not self.relay.take():
            return
        assert self.listener is not None
        connected = self.listener.conn is not None
        self.listener.add(doorbell.channels(self.options.queues, self.worker_id))
        if connected and self.listener.conn is None:
            self._lost_listener()
        if self.listener.pending:
            self._heard(self.listener.read())

    def _relisten(self) -> None:
        """After a lost LISTEN connection, try again (polling covers the gap)."""
        if self.listener is None or self.listener.conn is not None:
            return
        if self.listener.connect():
            self.selector.register(self.listener, selectors.EVENT_READ, self._on_listener)
            logger.info("listening for wake-ups again")

    def _trap_signals(self) -> None:
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, self._on_signal_wake)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.term_signals += 1
        if self.term_signals == 1:
            # Over an operator's drain too: cancelling that drain must not undo the signal.
            if self.stop_reason in ("", OPERATOR_DRAIN):
                self.stop_reason = "drained after SIGTERM"
        else:
            self.abort_reason = "aborted by a second SIGTERM"
            self.exit_code = 128 + signum

    def _on_sigint(self, signum: int, frame: object) -> None:
        self.abort_reason = "aborted by SIGINT"
        self.exit_code = 128 + signum

    def _on_signal_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._wake_r.recv(512)

    # -- the loop -------------------------------------------------------------------------

    def _done(self) -> bool:
        if self.abort_reason:
            self._abort_now()
            return True
        idle = self.running is None and not self.outbox
        if idle and self.stop_reason == OPERATOR_DRAIN:
            self._check_control()  # the drain may have been cancelled while the task ran
        return bool(self.stop_reason) and idle

    def _step(self) -> None:
        now = time.monotonic()
        self._timers(now)
        if self.abort_reason:
            return
        if self.stop_reason and not self.marked_draining:
            self._mark_draining()
        bundle = self.bundle
        if bundle is not None and not bundle.closed and (self.stop_reason or now >= bundle.cut_at):
            self._cut_bundle()
        if self._can_claim(now) and self._claim():
            return
        if self.outbox:
            self._flush_outbox(time.monotonic())
            if not self.outbox and self._can_claim(time.monotonic()):
                return  # written: claim the next task now, not at the next timer
        if self.stop_reason and self.running is None and not self.outbox:
            return  # stopping with nothing left to finish: now, not at the next timer
        self._wait(self._timeout(time.monotonic()))

    def _mark_draining(self) -> None:
        """Show DRAINING while the last task finishes (after SIGTERM or an operator's drain)."""
        asked = self.stop_reason == OPERATOR_DRAIN
        shown = self._db(lambda: lifecycle.start_draining(self.worker_id, asked=asked))
        if isinstance(shown, _DatabaseDown):
            return
        self.marked_draining = True
        if asked and not shown:
            self._resume()  # the operator cancelled the drain before it showed

    def _resume(self) -> None:
        logger.info("worker %s: the operator cancelled the drain; serving again", self.worker_id)
        self.stop_reason = ""
        self.marked_draining = False
        self.want_claim = True

    def _can_claim(self, now: float) -> bool:
        done = self._pending_success()
        return (
            self.running is None
            and not self.stop_reason
            and (not self.outbox or done is not None)
            and (self.want_claim or done is not None)
            and self.executor is not None
            and now >= self.db_retry_at
        )

    def _pending_success(self) -> Success | Successes | None:
        if len(self.outbox) == 1 and isinstance(self.outbox[0], Success | Successes):
            return self.outbox[0]
        return None

    def _claim_after(self, done: Success | Successes) -> list[ClaimedTask] | _DatabaseDown:
        items = done.items if isinstance(done, Successes) else (done,)
        results = [(item.token, item.value, item.ending) for item in items]
        holding = self._holding()
        try:
            claimed = self._db(
                lambda: queue.succeed_all_and_claim(results, self.options.queues, holding))
        except LostAttempt as exc:
            logger.warning("result discarded: %s", exc)
            self.outbox.clear()
            found = self._db(lambda: queue.claim_next(self.worker_id, self.options.queues))
            return found if isinstance(found, _DatabaseDown) else [found] if found else []
        except DatabaseError as exc:
            logger.exception("the database refused the result of task %s", done.token.id)
            self.outbox[0:1] = instead(done, exc)
            return []
        if not isinstance(claimed, _DatabaseDown):
            self.outbox.clear()
        return claimed

    def _holding(self) -> Holding | None:
        """What the next claim may hold beside its task (SQLite): short tasks, while no
        worker of this machine waits idle for them and this one is not stopping."""
        more = self.settings.short_tasks_per_claim - 1
        if self.options.max_tasks is not None:
            more = min(more, self.options.max_tasks - self.finished - 1)
        if more < 1 or not self.short or self.stop_reason or connection.vendor != "sqlite":
            return None
        if doorbell.anyone_idle(self.options.queues, self.worker_id):
            return None
        return Holding(frozenset(self.short), more)

    def _claim(self) -> bool:
        if self.claim_uncertain and not self._release_unheld():
            return False
        done = self._pending_success()
        sent = time.monotonic()
        self.empty = Empty.UNKNOWN
        self.enqueue_look_at = math.inf  # this claim is that look
        claimed = self._claim_after(done) if done is not None else self._look_and_claim()
        if isinstance(claimed, _DatabaseDown):
            self.claim_uncertain = True  # the claim may have landed without our hearing
            return False
        if done is not None and not (claimed and claimed[0].holds_at_least(done.token)):
            self._ended()  # else the share it freed was taken again in the same commit
        if claimed:
            self.batch_look = BATCH_FIRST_LOOK
            self.blocked = False
            self._hand_over(claimed, sent)
            if done is None:  # an idle worker took work: more may wait
                self._pass_on(claimed[0].queue)
            return True
        if not self.outbox:
            self._idle(time.monotonic())
        return False

    def _look_and_claim(self) -> list[ClaimedTask] | _DatabaseDown:
        woken, self.enqueued = self.enqueued, False
        if self.doorbell is not None:
            self.doorbell.busy()  # while it claims, work arriving rings another idle worker
        found = self._db(lambda: queue.look_and_claim(self.worker_id, self.options.queues,
                                                      look_first=not woken))
        if isinstance(found, Empty):
            self.empty = found
            if woken:
                logger.debug("worker %s: woken by an enqueue, its claim took nothing",
                             self.worker_id)
            return []
        return found if isinstance(found, _DatabaseDown) else [found]

    def _pass_on(self, queue_name: str) -> None:
        """An idle worker took a task: wake one more idle worker of this machine if more
        work is due (once its task has started: a wake-up is not on its way). Asked first,
        since a single task rang two workers, and the second claimed for nothing; a task
        that comes after the asking brings a wake-up of its own."""
        if self._db(lambda: queue.any_due([queue_name])) is True:
            doorbell.pass_on(queue_name, self.worker_id)

    def _idle(self, now: float) -> None:
        """Nothing to claim: wait for a wake-up or the next poll."""
        self.want_claim = False
        if self.doorbell is not None:
            self.doorbell.idle(self.options.queues)
        stamps.stamp(self.look_job)
        if not self.options.batch:
            self._note_blocked()
        self.timers.poll = now + self.settings.poll_interval
        if self.retry_due > now:
            self.timers.poll = min(self.timers.poll, self.retry_due + 0.001)
        else:
            self.retry_due = math.inf
        self._disarm()
        if self.options.batch:
            self._batch_idle(now)

    def _batch_idle(self, now: float) -> None:
        """A batch worker stops once nothing is queued. A task still queued may be one a
        peer is claiming right now (its commit not yet seen): look again soon, backing off
        to the poll interval, for a task not due yet or that does not fit."""
        left = self._db(lambda: queue.has_queued(self.options.queues))
        if left is False:
            self.stop_reason = "batch finished: nothing left to claim"
        elif left is True:
            self._blocked()
            self.timers.poll = min(self.timers.poll, now + self.batch_look)
            self.batch_look = min(2 * self.batch_look, self.settings.poll_interval)

    def _note_blocked(self) -> None:
        """A due task did not fit this node: ask to be woken when a task here ends, rather
        than at the next poll (an ending frees memory and CPUs). After a success-and-claim
        that found nothing (UNKNOWN) the next look tells; no statement is spent on it."""
        if self.empty is Empty.NOT_FITTING:
            logger.debug("worker %s: a due task waits, but none fits this node now",
                         self.worker_id)
            self._blocked()
        elif self.empty is Empty.NOTHING_DUE:
            self.blocked = False

    def _blocked(self) -> None:
        self.blocked = True
        stamps.stamp(BLOCKED_JOB)

    def _ended(self) -> None:
        """A task of this worker's ended (its ending committed): wake this node's blocked
        workers if one was blocked within a poll interval. No SQL: the stamp's age, read
        at most every BLOCKED_LOOK_EVERY seconds (a busy worker ends hundreds of tasks a
        second; a blocked one waits that much longer at most)."""
        now = time.monotonic()
        if now >= self.blocked_look_at:
            self.blocked_look_at = now + BLOCKED_LOOK_EVERY
            self.node_blocked = stamps.age(BLOCKED_JOB) < self.settings.poll_interval
        if self.node_blocked:
            doorbell.ring_local(doorbell.FREED)

    def _release_unheld(self) -> bool:
        # ours: its ending not yet written, running, or in the bundle
        keep = {token.id for write in self.outbox for token in tokens(write)}
        if self.running is not None:
            keep.add(self.running.token.id)
        if self.bundle is not None:
            keep |= {token.id for token in self.bundle.tokens}
            keep |= {success.token.id for success in self.bundle.done}
        released = self._db(lambda: queue.release_unheld(self.worker_id, keep))
        if isinstance(released, _DatabaseDown):
            return False
        self.claim_uncertain = False
        return True

    def _timeout(self, now: float) -> float:
        deadlines = [self.timers.heartbeat, self.timers.tick]
        running = self.running
        if running is None:
            if not self.want_claim:  # else: a claim, or its retry after db_retry_at, is due
                deadlines += [self.timers.poll, self.enqueue_look_at]
        else:
            deadlines += [running.deadline, self.timers.sample, self.timers.control,
                          running.lease.stop_at, max(running.lease.renew_at,
                                                     running.renew_retry_at)]
            if running.progress is not None:
                deadlines.append(running.progress_sent_at + PROGRESS_EVERY)
            if running.limit is not None:
                deadlines.append(self.timers.memory)
            if self.bundle is not None and not self.bundle.closed:
                deadlines.append(self.bundle.cut_at)
        if self.outbox or now < self.db_retry_at:
            deadlines.append(self.db_retry_at)
        return max(0.0, min(deadlines) - now)

    def _wait(self, timeout: float) -> None:
        logs.flush_pending()
        for key, _ in self.selector.select(timeout):
            key.data()

    # -- timers ---------------------------------------------------------------------------

    def _timers(self, now: float) -> None:
        settings = self.settings
        if self.running is not None:
            self._keep_lease(now)  # first: after an outage, renew before anything else
        if self.running is not None:
            self._watch_running(now)
        if now >= self.timers.heartbeat:
            self.timers.heartbeat = now + settings.heartbeat_interval
            self._heartbeat()
            self.beats += 1
            if self.beats % PROBE_EVERY_BEATS == 0:
                self._probe_listener()
            if now >= self.db_retry_at:
                self._relisten()
            self._take_relay()
        if self.running is not None and now >= self.timers.control:
            self.timers.control = now + settings.poll_interval
            self._check_control()
        if now >= self.timers.tick:
            self.timers.tick = now + settings.tick_interval
            if not self._leaves_the_tick():
                self._tick()
        if self.running is None and not self.want_claim and now >= self.timers.poll:
            self._poll(now)
        if now >= self.enqueue_look_at:
            self.enqueue_look_at = math.inf
            self.want_claim = self.enqueued = True

    def _poll(self, now: float) -> None:
        """Look at the queue, unless an idle worker of this node serving the same queues
        found nothing within the poll interval: a claim depends on the node and the queues
        only, so it would find nothing either (an enqueue wakes an idle worker anyway). The
        node still looks at least once an interval; a retry of this worker's comes due."""
        self._take_relay()  # the worker that listened for this machine may have died
        shared = stamps.age(self.look_job) < self.settings.poll_interval * LOOK_SHARED_FOR
        if shared and self.retry_due > now and not self.options.batch:
            self.timers.poll = now + self.settings.poll_interval
            return
        self.want_claim = True

    def _leaves_the_tick(self) -> bool:
        """The worker that listens for its machine (PostgreSQL) leaves the node's tick to
        its other workers while one of them takes it (``leaves_the_tick``)."""
        relay = self.relay
        if relay is None or not relay.relays:
            return False
        return monitor.leaves_the_tick(doorbell.others_here(self.worker_id),
                                       stamps.age("tick"), self.settings.tick_interval)

    def _tick(self) -> None:
        """The node's monitor tick; no error of it, or of one task's data, stops the worker."""
        try:
            if isinstance(self._db(monitor.maybe_tick), monitor.TickReport):
                logger.debug("worker %s ran its machine's tick", self.worker_id)
        except Exception:  # the tick must never take its worker down
            logger.exception("the monitor tick failed; the next one will try again")

    def _keep_lease(self, now: float) -> None:
        """Renew the running attempt's lease on its beat; stop the task if it cannot be."""
        running = self.running
        assert running is not None
        lease = running.lease
        if now >= lease.stop_at:
            self._stop_task(queue.Ending(
                Outcome.LEASE_EXPIRED,
                "Stopped by its worker before its lease could end: the lease could not be "
                "renewed in time (database unreachable, or the worker was not scheduled).",
            ))
            return
        if now < lease.renew_at or now < running.renew_retry_at:
            return
        sent = time.monotonic()
        renewed = self._db(lambda: queue.renew(running.token))
        if renewed is True:
            lease.sent_at = sent
            self._arm(lease)
        elif renewed is False:
            logger.warning("task %s: the lease was lost (expired or taken over); stopping it",
                           running.token.id)
            self._stop_task(None)
        else:
            running.renew_retry_at = max(self.db_retry_at, now + 0.2)

    def _watch_running(self, now: float) -> None:
        running = self.running
        assert running is not None
        if now >= running.deadline:
            timeout = running.token.timeout
            self._stop_task(queue.Ending(Outcome.TIMED_OUT, f"Timed out after {timeout:g} s"))
            return
        if running.limit is not None and now >= self.timers.memory:
            self._check_limit(running, now)
            if self.running is not running:
                return
        if now >= self.timers.sample:
            self.timers.sample = now + SAMPLE_EVERY
            pid = self.executor.pid if self.executor else None
            running.peak_rss = max(running.peak_rss, self.meter.tree(pid)[0])
        if running.progress is not None and now >= running.progress_sent_at + PROGRESS_EVERY:
            self._send_progress(running, now)

    def _check_limit(self, running: Running, now: float) -> None:
        """Stop a task whose process tree has grown past its limit, before the machine
        runs short (and before the kernel's OOM killer picks a victim of its own)."""
        assert running.limit is not None
        self.timers.memory = now + memory.LIMIT_SAMPLE_EVERY
        rss = self.meter.tree_rss(self.executor.pid if self.executor else None)
        running.peak_rss = max(running.peak_rss, rss)
        if rss > running.limit:
            error = memory.over_limit_message(rss, running.limit)
            self._stop_task(queue.Ending(Outcome.MEMORY_LIMIT, error,
                                         peak_rss_bytes=running.peak_rss))

    def _heartbeat(self) -> None:
        processes.reap_orphans(keep=self.executor.pid if self.executor else None)
        self._check_sentinel()
        running = self.running
        token = running.token if running else None
        pid = self.executor.pid if self.executor else None
        sample = self.meter.sample(pid, token.id if token else None)
        if running is not None and sample.task_rss_bytes:
            running.peak_rss = max(running.peak_rss, sample.task_rss_bytes)
        counts = (self.counts[0], self.counts[1])
        found = self._db(lambda: lifecycle.heartbeat(self.worker_id, sample, counts))
        if isinstance(found, Control):
            self._apply(found)

    def _check_control(self) -> None:
        token = self.running.token if self.running else None
        found = self._db(lambda: lifecycle.control(self.worker_id, token))
        if isinstance(found, Control):
            self._apply(found)

    def _apply(self, control: Control) -> None:
        if control.abort:
            if not self.abort_reason:
                self.abort_reason = "aborted by operator"
                self.exit_code = EXIT_ABORTED
        elif control.drain and not self.stop_reason:
            self.stop_reason = OPERATOR_DRAIN
            self._mark_draining()
        elif control.drain and self.stop_reason == OPERATOR_DRAIN and not control.shown_draining:
            self._mark_draining()  # cancelled and asked for again between two looks: show it
        elif not control.drain and self.stop_reason == OPERATOR_DRAIN:
            self._resume()
        if self.running is None:
            return
        if not control.lease_ok:
            logger.warning("lost task %s: its lease was taken over", self.running.token.id)
            self._stop_task(None)
        elif control.cancel:
            self._stop_task(queue.Ending(Outcome.CANCELLED, "Cancelled while running"))

    # -- wake-ups -------------------------------------------------------------------------

    def _on_doorbell(self) -> None:
        assert self.doorbell is not None
        self._on_messages(self.doorbell.read())

    def _on_listener(self) -> None:
        assert self.listener is not None
        messages = self.listener.read()
        if self.listener.conn is None:
            self._lost_listener()
        self._heard(messages)

    def _probe_listener(self) -> None:
        """A LISTEN connection can die silently: ask it something now and then."""
        listener = self.listener
        if listener is not None and listener.conn is not None and not listener.probe():
            self._lost_listener()
        if listener is not None and listener.pending:
            self._heard(listener.read())

    def _lost_listener(self) -> None:
        assert self.listener is not None
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self.listener)
        self.db_retry_at = max(self.db_retry_at, time.monotonic() + 0.5)
        self.want_claim = True  # a wake-up may have been missed

    def _heard(self, messages: list[str]) -> None:
        """Messages by NOTIFY: work arriving is passed on to this machine's workers when
        this one listens for them."""
        if self.relay is not None and self.relay.relays:
            for message in dict.fromkeys(messages):
                if message.startswith("q:"):
                    doorbell.relay(message, self.worker_id)
        self._on_messages(messages)

    def _on_messages(self, messages: list[str]) -> None:
        if doorbell.RELAY in messages:
            self._take_relay()
        if f"w:{self.worker_id}" in messages:
            self._check_control()
        enqueued = any(f"q:{name}" in messages for name in self.options.queues)
        freed = doorbell.FREED in messages and self.blocked and self.running is None
        if enqueued and self.blocked and not freed:
            self._look_after_enqueue()
        elif enqueued or freed:
            self.want_claim = self.enqueued = True

    def _look_after_enqueue(self) -> None:
        """A task arrived while the last due task did not fit this node: a new one fits
        only if it is smaller, and a claim per enqueue made a waiting worker take the
        database's write lock as fast as tasks arrived (a quarter of the enqueue rate on
        SQLite). Look once the enqueues of the next BLOCKED_ENQUEUE_LOOK seconds are in."""
        if self.enqueue_look_at == math.inf:
            self.enqueue_look_at = time.monotonic() + BLOCKED_ENQUEUE_LOOK

    # -- the executor ---------------------------------------------------------------------

    def _start_executor(self) -> None:
        self.executor = executor_mod.start()
        self.selector.register(self.executor, selectors.EVENT_READ, self._on_executor)
        self.selector.register(self.executor.output, selectors.EVENT_READ, self._on_output)

    def _stop_executor(self, *, graceful: bool) -> int | None:
        """Stop the executor and everything it started; return its wait status."""
        ex = self.executor
        assert ex is not None
        if self.bundle is not None:
            self._close_bundle()  # before it is gone: which tasks began
        self.executor = None
        self.selector.unregister(ex)
        self._drain_output(ex.output)
        self.selector.unregister(ex.output)
        if graceful:
            with contextlib.suppress(OSError):
                ex.conn.send({"stop": True})
            status = executor_mod.reap(ex.pid, timeout=1.0)
        else:
            status = executor_mod.reap(ex.pid, timeout=0.0)
        ex.conn.close()
        os.close(ex.output)
        return status

    def _on_output(self) -> None:
        assert self.executor is not None
        self._drain_output(self.executor.output)

    def _drain_output(self, fd: int) -> None:
        chunks = []
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        if not chunks:
            return
        data = b"".join(chunks)
        text = data.decode(errors="replace")
        task_id = self.running.token.id if self.running else None
        for line in text.splitlines():
            task_log.info("[task %s] %s", task_id, line)
        if self.running is not None:
            self.running.tail = (self.running.tail + text)[-TAIL_KEEP:]
            if self.running.log is not None:
                self.running.log.write(data)

    def _on_executor(self) -> None:
        assert self.executor is not None
        try:
            message: dict[str, Any] = self.executor.conn.recv()
        except (EOFError, OSError):
            self._executor_died()
            return
        if "log" in message and "ok" not in message:
            djangolog.log(message["log"])
        elif "progress" in message and self.running is not None:
            self.running.progress = (message["progress"], message.get("message", ""))
            if time.monotonic() >= self.running.progress_sent_at + PROGRESS_EVERY:
                self._send_progress(self.running, time.monotonic())
        elif "ok" in message:
            self._finished(message)

    def _executor_died(self) -> None:
        status = self._stop_executor(graceful=False)
        reason = executor_mod.describe(status)
        logger.error("the executor died: %s", reason)
        running = self.running
        if running is not None and not self._running_began():
            self._drop_unbegun()
        elif running is not None and running.stopped is None:
            if time.monotonic() >= running.lease.kill_at:
                self._end(queue.Ending(Outcome.LEASE_EXPIRED, "Stopped by its worker's sentinel "
                                       "before its lease could end: it could not be renewed."))
            elif memory.killed_by_oom(status, running.oom_kills):
                self._end(queue.Ending(Outcome.OOM_KILLED, "Killed by the kernel's OOM killer: "
                                       f"{reason}, and the machine's OOM-kill count rose"))
            else:
                self._end(queue.Ending(Outcome.CRASHED, f"Task process crashed: {reason}"))
        if not self.abort_reason:
            self._start_executor()

    # -- one attempt ----------------------------------------------------------------------

    def _hand_over(self, claimed: list[ClaimedTask], sent: float) -> None:
        """Give the executor its task (and those held beside it), once the sentinel guards
        the lease taken at ``sent``."""
        assert self.executor is not None
        settings = self.settings
        lease = Lease(sent, settings.lease_ttl, settings.lease_margin, settings.renew_every)
        self.running = self._running(claimed[0], lease)
        self._arm(lease)
        self.timers.sample = time.monotonic() + SAMPLE_EVERY
        self.timers.memory = time.monotonic() + memory.LIMIT_SAMPLE_EVERY
        self.timers.control = time.monotonic() + settings.poll_interval
        if len(claimed) == 1:
            self.executor.conn.send({"task": self._payload(claimed[0])})
            return
        logger.debug("worker %s: %d short tasks of %s claimed together", self.worker_id,
                     len(claimed), claimed[0].func_path)
        self.bundle = Bundle(list(claimed), cut_at=time.monotonic() + self._cut_after())
        self.executor.gate.open(len(claimed))
        self.executor.conn.send({"tasks": [self._payload(token) for token in claimed]})

    def _running(self, token: ClaimedTask, lease: Lease) -> Running:
        settings = self.settings
        timeout = min(token.timeout, settings.task_timeout)
        log = logs.AttemptLog(functools.partial(logs.attempt_log_path, settings.log_dir, token.id,
                                                token.attempt))
        return Running(token=token, deadline=time.monotonic() + timeout, lease=lease, log=log,
                       limit=memory.limit_bytes(token.memory_limit_mb, settings),
                       oom_kills=memory.oom_kills_lately(time.monotonic()))

    def _payload(self, token: ClaimedTask) -> dict[str, Any]:
        return {
            "id": token.id,
            "attempt": token.attempt,
            "worker_id": self.worker_id,
            "func_path": token.func_path,
            "args": token.args,
            "kwargs": token.kwargs,
            "row": token.row_facts(),
        }

    # -- short tasks claimed together (runtime.bundle) ------------------------------------

    def _cut_after(self) -> float:
        """How long a task of a bundle may run before the tasks held behind it go back."""
        return max(0.02, 4 * self.settings.short_task_ms / 1000)

    def _learn(self, running: Running, message: dict[str, Any]) -> None:
        """Whether the task's function may be held beside others from now on: its run
        here was short and printed nothing."""
        seconds = message.get("seconds")
        func_path = running.token.func_path
        if (seconds is not None and seconds * 1000 < self.settings.short_task_ms
                and not running.tail):
            self.short.add(func_path)
        else:
            self.short.discard(func_path)

    def _next_in_bundle(self, lease: Lease | None) -> None:
        """A task of the bundle replied: the next one began, or the bundle is over."""
        assert self.bundle is not None
        token = self.bundle.next()
        if token is None or lease is None:
            self._end_bundle()
            return
        self.running = self._running(token, lease)
        self.bundle.cut_at = time.monotonic() + self._cut_after()

    def _end_bundle(self) -> None:
        """Its successes wait to be written together, with the next claim."""
        bundle, self.bundle = self.bundle, None
        if bundle is not None and bundle.done:
            done = bundle.done
            self._queue_write(done[0] if len(done) == 1 else Successes(tuple(done)))

    def _close_bundle(self) -> None:
        """No task of the bundle begins any more: those that never began go back."""
        assert self.bundle is not None and self.executor is not None
        unbegun = self.bundle.close(self.executor.gate)
        if unbegun:
            self._queue_write(Release(tuple(unbegun)))

    def _cut_bundle(self) -> None:
        """A task of the bundle runs long, or the worker stops: the tasks held behind it go
        back, the successes so far are written, and the task running holds its share."""
        bundle = self.bundle
        assert bundle is not None
        self._close_bundle()
        if bundle.done:
            self._queue_write(Successes(tuple(bundle.done)))
            bundle.done = []
        running = self.running
        if running is not None and running.token.held and bundle.began():
            self._queue_write(Begin(running.token, budget.local_node()))

    def _running_began(self) -> bool:
        return self.bundle is None or self.bundle.began()

    def _drop_unbegun(self) -> None:
        """The task expected next never began (the executor stopped first): it went back
        with the others (``_close_bundle``); nothing of it is recorded."""
        self._close_log()
        self.running = None
        self.want_claim = True
        self._end_bundle()

    def _send_progress(self, running: Running, now: float) -> None:
        fraction, message = running.progress or (None, "")
        running.progress = None
        running.progress_sent_at = now
        ok = self._db(lambda: self._progress_write(Progress(running.token, fraction, message)))
        if ok is False:
            logger.warning("task %s was taken from this worker; stopping it", running.token.id)
            self._stop_task(None)

    def _finished(self, message: dict[str, Any]) -> None:
        djangolog.log(message.get("log", []))
        running = self.running
        if running is None or running.stopped is not None:
            return
        running.token = began_at(running.token, message.get("began_at"))
        self._drain_output(self.executor.output if self.executor else -1)
        self._learn(running, message)
        peak = max(running.peak_rss, message.get("peak_rss_bytes") or 0) or None
        if running.progress is not None:
            fraction, text = running.progress
            self._queue_write(Progress(running.token, fraction, text))
        if message["ok"]:
            ending = queue.Ending(Outcome.SUCCEEDED, peak_rss_bytes=peak,
                                  log_tail=running.log_tail())
            success = Success(running.token, message["value"], ending)
            if self.bundle is not None:
                self.bundle.done.append(success)
            else:
                self._queue_write(success)
            self.counts[0] += 1
            self._after_task()
        else:
            self._end(queue.Ending(Outcome.ERROR, message["error"], message["traceback"], peak,
                                   running.log_tail(), message.get("exception_class", "")))
        self._replace_if_grown(message.get("rss_bytes"), message.get("ceiling_bytes"))

    def _replace_if_grown(self, rss: int | None, ceiling: int | None) -> None:
        """Replace an executor that kept memory after its task, before the next claim: the
        memory goes back to the machine, and the next task's peak is its own."""
        if rss is None or ceiling is None or rss <= ceiling or self.executor is None:
            return
        if self.bundle is not None:
            return  # its next task runs already; the bundle's last reply tells again
        logger.info("the executor holds %s MB after its task (WORKER_EXECUTOR_MAX_RSS_MB: %s);"
                    " replacing it", memory.mb(rss), memory.mb(ceiling),
                    extra={"rss_bytes": rss, "ceiling_bytes": ceiling})
        self._stop_executor(graceful=True)
        if not self.abort_reason:
            self._start_executor()

    def _end(self, ending: queue.Ending) -> None:
        """Record a failed attempt (retry, fail, cancel) and free the slot."""
        assert self.running is not None
        token = self.running.token
        peak = ending.peak_rss_bytes or self.running.peak_rss or None
        tail = ending.log_tail or self.running.log_tail()  # its own lines, never the worker's
        final = queue.Ending(ending.outcome, ending.error, ending.traceback, peak, tail,
                             ending.exception_class).storable()
        logger.warning("task %s attempt %s ended %s: %s\n%s", token.id, token.attempt,
                       final.outcome, final.error, final.traceback)
        self._log_ending(final)
        self._queue_write(Failure(token, final))
        self.counts[1] += 1
        self._after_task()

    def _progress_write(self, write: Progress) -> bool:
        try:
            return queue.report_progress(write.token, write.fraction, write.text)
        except DB_ERRORS:
            raise
        except DatabaseError:
            logger.exception("the database refused task %s's progress", write.token.id)
            return True

    def _log_ending(self, ending: queue.Ending) -> None:
        """End the attempt's own log with why it failed, as the worker's log says it."""
        assert self.running is not None
        if self.running.log is not None:
            note = f"[crucible] attempt ended {ending.outcome}: {ending.error}\n{ending.traceback}"
            self.running.log.write(note.rstrip("\n").encode(errors="replace") + b"\n")

    def _close_log(self) -> None:
        if self.running is not None and self.running.log is not None:
            self.running.log.close()

    def _after_task(self) -> None:
        self._close_log()
        lease = self.running.lease if self.running is not None else None
        self.running = None
        self.want_claim = True
        self.finished += 1
        limit = self.options.max_tasks
        if limit is not None and self.finished >= limit and not self.stop_reason:
            self.stop_reason = f"max tasks reached ({limit})"
        if self.bundle is not None:
            self._next_in_bundle(lease)

    def _stop_task(self, ending: queue.Ending | None) -> None:
        """Kill the running task and its children now; record ``ending``.

        None: the attempt was lost (taken over, or its lease ended by the database's clock).
        Its ending is still offered, fenced: written only if nobody has taken it over.
        """
        running = self.running
        assert running is not None
        running.stopped = ending or queue.Ending(Outcome.LEASE_EXPIRED)
        self._disarm()
        self._stop_executor(graceful=False)
        if not self._running_began():
            self._drop_unbegun()
        elif ending is None:
            lost = queue.Ending(Outcome.LEASE_EXPIRED, "The lease ended before its worker could "
                                "renew it; the worker stopped the task.")
            self._queue_write(Failure(running.token, lost))
            self._close_log()
            self.running = None
            self.want_claim = True
            self._end_bundle()
        else:
            self._end(ending)
        if not self.abort_reason:
            self._start_executor()

    def _abort_now(self) -> None:
        if self.running is not None:
            self._stop_task(queue.Ending(Outcome.ABORTED, f"Worker {self.abort_reason}"))
        self._flush_outbox(time.monotonic(), force=True)

    # -- database access ------------------------------------------------------------------

    def _db(self, call: Callable[[], T]) -> T | _DatabaseDown:
        """Run a database call; on a lost connection, back off instead of crashing."""
        if time.monotonic() < self.db_retry_at:
            return DOWN
        try:
            result = call()
        except DB_ERRORS as exc:
            self._lost_database(exc)
            return DOWN
        self.db_backoff = 0.0
        return result

    def _lost_database(self, exc: Exception) -> None:
        self.db_backoff = min(max(self.db_backoff * 2, 0.2), MAX_DB_BACKOFF)
        self.db_retry_at = time.monotonic() + self.db_backoff
        logger.warning("database unavailable (%s); retrying in %.1f s", exc, self.db_backoff)
        with contextlib.suppress(*DB_ERRORS):
            connection.close()

    def _queue_write(self, write: Write) -> None:
        self.outbox.append(write)

    def _flush_outbox(self, now: float, *, force: bool = False) -> None:
        if force:
            self.db_retry_at = 0.0
        while self.outbox and now >= self.db_retry_at:
            write = self.outbox[0]
            try:
                self._db_write(write)
            except _Retry:
                return
            self.outbox.pop(0)

    def _db_write(self, write: Write) -> None:
        try:
            retry_in = write()
        except LostAttempt as exc:
            logger.warning("result discarded: %s", exc)
        except DB_ERRORS as exc:
            self._lost_database(exc)
            raise _Retry from exc
        except DatabaseError as exc:
            logger.exception("the database refused a write for task %s", write.token.id)
            self.outbox[1:1] = instead(write, exc)  # after this one, which is popped
        else:
            self.db_backoff = 0.0
            if retry_in is not None:  # look again when the retry is due, not a poll later
                self.retry_due = min(self.retry_due, time.monotonic() + retry_in)
            if not isinstance(write, Progress):
                self._ended()

    # -- the sentinel ---------------------------------------------------------------------

    def _arm(self, lease: Lease) -> None:
        if self.sentinel is None or self.executor is None:
            return
        try:
            self.sentinel.arm(self.executor.pid, lease.kill_at)
        except OSError:
            logger.warning("the sentinel is gone; starting a new one")
            self._restart_sentinel()
            self.sentinel.arm(self.executor.pid, lease.kill_at)

    def _disarm(self) -> None:
        if self.sentinel is not None:
            with contextlib.suppress(OSError):
                self.sentinel.disarm()

    def _check_sentinel(self) -> None:
        if self.sentinel is not None and not self.sentinel.alive():
            logger.warning("the sentinel exited; starting a new one")
            self._restart_sentinel()
            if self.running is not None:
                self._arm(self.running.lease)

    def _restart_sentinel(self) -> None:
        if self.sentinel is not None:
            with contextlib.suppress(OSError):
                self.sentinel.close()
        self.sentinel = Sentinel.start()


class _Retry(Exception):
    pass


def exit_state(reason: str) -> str:
    return WorkerState.DEAD if reason else WorkerState.FAILED

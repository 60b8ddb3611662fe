"""The worker process: claim, hand to the executor, watch, record; never blocks on a task.

One thread, one select loop: wake-ups (doorbell, LISTEN, signals), the executor's messages
and output, and timers (heartbeat, tick, deadline, control poll). Database writes that fail
wait in an outbox and are retried with backoff, so a computed result is never dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from django.db import InterfaceError, OperationalError, connection

from .. import conf, lifecycle, monitor, processes, queue
from ..claim import ClaimedTask
from ..doorbell import Doorbell
from ..exceptions import LostAttempt
from ..lifecycle import Control
from ..models import Task
from ..states import Outcome, TaskState, WorkerState
from . import executor as executor_mod
from . import logs
from .meter import Meter
from .wake import Listener, listener_for_database

logger = logging.getLogger(__name__)
task_log = logging.getLogger("workers.task")
T = TypeVar("T")
DB_ERRORS = (OperationalError, InterfaceError)
PROGRESS_EVERY = 0.5
SAMPLE_EVERY = 1.0
MAX_DB_BACKOFF = 30.0
TAIL_CHARS = queue.TAIL_CHARS


class _DatabaseDown:
    pass


@dataclass(frozen=True, slots=True)
class Success:
    """A result waiting to be written; merged with the next claim when there is one."""

    token: ClaimedTask
    value: Any
    ending: queue.Ending

    def __call__(self) -> None:
        queue.succeed(self.token, self.value, self.ending)


DOWN = _DatabaseDown()


@dataclass(frozen=True, slots=True)
class Options:
    queues: list[str]
    max_tasks: int | None = None
    batch: bool = False


@dataclass
class Running:
    """The attempt in flight."""

    token: ClaimedTask
    deadline: float
    tail: str = ""
    peak_rss: int = 0
    progress: tuple[float | None, str] | None = None
    progress_sent_at: float = 0.0
    stopped: queue.Ending | None = None  # set when the supervisor stopped it on purpose


@dataclass
class Timers:
    heartbeat: float = 0.0
    tick: float = 0.0
    control: float = 0.0
    sample: float = 0.0


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
        self.outbox: list[Callable[[], None]] = []
        self.stop_reason = ""
        self.abort_reason = ""
        self.counts = [0, 0]  # succeeded, failed
        self.finished = 0
        self.db_backoff = 0.0
        self.db_retry_at = 0.0
        self.timers = Timers()
        self.term_signals = 0
        self.doorbell: Doorbell | None = None
        self.listener: Listener | None = None
        self.holder = f"worker {self.worker_id}"

    # -- setup and teardown ---------------------------------------------------------------

    def start(self) -> None:
        """Fork the executor, open the wake-up channels, and tell everyone we run."""
        processes.become_subreaper()
        self._start_executor()
        self.doorbell = Doorbell(self.worker_id)
        self.selector.register(self.doorbell, selectors.EVENT_READ, self._on_doorbell)
        self._listen()
        self._trap_signals()
        lifecycle.mark_running(self.worker_id, self.doorbell.path)
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

    def _listen(self) -> None:
        self.listener = listener_for_database()
        if self.listener is not None and self.listener.conn is not None:
            self.selector.register(self.listener, selectors.EVENT_READ, self._on_listener)

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
            self.stop_reason = self.stop_reason or "drained after SIGTERM"
        else:
            self.abort_reason = "aborted by a second SIGTERM"

    def _on_sigint(self, signum: int, frame: object) -> None:
        self.abort_reason = "aborted by SIGINT"

    def _on_signal_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._wake_r.recv(512)

    # -- the loop -------------------------------------------------------------------------

    def _done(self) -> bool:
        if self.abort_reason:
            self._abort_now()
            return True
        return bool(self.stop_reason) and self.running is None and not self.outbox

    def _step(self) -> None:
        now = time.monotonic()
        self._timers(now)
        if self.abort_reason:
            return
        if self._can_claim(now) and self._claim():
            return
        if self.outbox:
            self._flush_outbox(time.monotonic())
            if not self.outbox and self._can_claim(time.monotonic()):
                return  # written: claim the next task now, not at the next timer
        self._wait(self._timeout(time.monotonic()))

    def _can_claim(self, now: float) -> bool:
        return (
            self.running is None
            and not self.stop_reason
            and (not self.outbox or self._pending_success() is not None)
            and self.executor is not None
            and now >= self.db_retry_at
        )

    def _pending_success(self) -> Success | None:
        if len(self.outbox) == 1 and isinstance(self.outbox[0], Success):
            return self.outbox[0]
        return None

    def _claim_after(self, done: Success) -> ClaimedTask | _DatabaseDown | None:
        try:
            claimed = self._db(
                lambda: queue.succeed_and_claim(done.token, done.value, done.ending,
                                                self.options.queues)
            )
        except LostAttempt as exc:
            logger.warning("result discarded: %s", exc)
            self.outbox.clear()
            return self._db(lambda: queue.claim_next(self.worker_id, self.options.queues))
        if not isinstance(claimed, _DatabaseDown):
            self.outbox.clear()
        return claimed

    def _claim(self) -> bool:
        done = self._pending_success()
        if done is not None:
            claimed = self._claim_after(done)
        else:
            claimed = self._db(lambda: queue.claim_next(self.worker_id, self.options.queues))
        if isinstance(claimed, ClaimedTask):
            self._hand_over(claimed)
            return True
        if claimed is None and self.options.batch and self._nothing_left():
            self.stop_reason = "batch finished: nothing left to claim"
        return False

    def _nothing_left(self) -> bool:
        waiting = self._db(
            lambda: Task.objects.filter(
                queue__in=self.options.queues, state=TaskState.QUEUED
            ).exists()
        )
        return waiting is False

    def _timeout(self, now: float) -> float:
        deadlines = [self.timers.heartbeat, self.timers.tick, self.timers.control]
        if self.running is not None:
            deadlines += [self.running.deadline, self.timers.sample]
            if self.running.progress is not None:
                deadlines.append(self.running.progress_sent_at + PROGRESS_EVERY)
        if self.outbox or now < self.db_retry_at:
            deadlines.append(self.db_retry_at)
        return max(0.0, min(deadlines) - now)

    def _wait(self, timeout: float) -> None:
        for key, _ in self.selector.select(timeout):
            key.data()

    # -- timers ---------------------------------------------------------------------------

    def _timers(self, now: float) -> None:
        settings = self.settings
        if now >= self.timers.heartbeat:
            self.timers.heartbeat = now + settings.heartbeat_interval
            self._heartbeat()
        if now >= self.timers.control:
            self.timers.control = now + settings.poll_interval
            self._check_control()
            if now >= self.db_retry_at:
                self._relisten()
        if now >= self.timers.tick:
            self.timers.tick = now + settings.tick_interval
            self._db(lambda: monitor.maybe_tick(self.holder))
        if self.running is not None:
            self._watch_running(now)

    def _watch_running(self, now: float) -> None:
        running = self.running
        assert running is not None
        if now >= running.deadline:
            timeout = running.token.timeout
            self._stop_task(queue.Ending(Outcome.TIMED_OUT, f"Timed out after {timeout:g} s"))
            return
        if now >= self.timers.sample:
            self.timers.sample = now + SAMPLE_EVERY
            pid = self.executor.pid if self.executor else None
            running.peak_rss = max(running.peak_rss, self.meter.tree(pid)[0])
        if running.progress is not None and now >= running.progress_sent_at + PROGRESS_EVERY:
            self._send_progress(running, now)

    def _heartbeat(self) -> None:
        processes.reap_orphans(keep=self.executor.pid if self.executor else None)
        running = self.running
        token = running.token if running else None
        pid = self.executor.pid if self.executor else None
        sample = self.meter.sample(pid, token.id if token else None)
        if running is not None and sample.task_rss_bytes:
            running.peak_rss = max(running.peak_rss, sample.task_rss_bytes)
        counts = (self.counts[0], self.counts[1])
        found = self._db(lambda: lifecycle.heartbeat(self.worker_id, sample, token, counts))
        if isinstance(found, Control):
            self._apply(found)

    def _check_control(self) -> None:
        token = self.running.token if self.running else None
        found = self._db(lambda: lifecycle.control(self.worker_id, token))
        if isinstance(found, Control):
            self._apply(found)

    def _apply(self, control: Control) -> None:
        if control.abort:
            self.abort_reason = self.abort_reason or "aborted by operator"
        elif control.drain and not self.stop_reason:
            self.stop_reason = "drained by operator"
            self._db(lambda: lifecycle.start_draining(self.worker_id))
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
            self.selector.unregister(self.listener)
            self.db_retry_at = max(self.db_retry_at, time.monotonic() + 0.5)
        self._on_messages(messages)

    def _on_messages(self, messages: list[str]) -> None:
        if f"w:{self.worker_id}" in messages:
            self._check_control()

    # -- the executor ---------------------------------------------------------------------

    def _start_executor(self) -> None:
        self.executor = executor_mod.start()
        self.selector.register(self.executor, selectors.EVENT_READ, self._on_executor)
        self.selector.register(self.executor.output, selectors.EVENT_READ, self._on_output)

    def _stop_executor(self, *, graceful: bool) -> int | None:
        """Stop the executor and everything it started; return its wait status."""
        ex = self.executor
        assert ex is not None
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
        text = b"".join(chunks).decode(errors="replace")
        task_id = self.running.token.id if self.running else None
        for line in text.splitlines():
            task_log.info("[task %s] %s", task_id, line)
        if self.running is not None:
            self.running.tail = (self.running.tail + text)[-TAIL_CHARS:]

    def _on_executor(self) -> None:
        assert self.executor is not None
        try:
            message: dict[str, Any] = self.executor.conn.recv()
        except (EOFError, OSError):
            self._executor_died()
            return
        if "progress" in message and self.running is not None:
            self.running.progress = (message["progress"], message.get("message", ""))
            if time.monotonic() >= self.running.progress_sent_at + PROGRESS_EVERY:
                self._send_progress(self.running, time.monotonic())
        elif "ok" in message:
            self._finished(message)

    def _executor_died(self) -> None:
        status = self._stop_executor(graceful=False)
        reason = executor_mod.describe(status)
        logger.error("the executor died: %s", reason)
        if self.running is not None and self.running.stopped is None:
            self._end(queue.Ending(Outcome.CRASHED, f"Task process crashed: {reason}"))
        if not self.abort_reason:
            self._start_executor()

    # -- one attempt ----------------------------------------------------------------------

    def _hand_over(self, token: ClaimedTask) -> None:
        assert self.executor is not None
        timeout = min(token.timeout, self.settings.task_timeout)
        self.running = Running(token=token, deadline=time.monotonic() + timeout)
        self.timers.sample = time.monotonic() + SAMPLE_EVERY
        payload = {
            "id": token.id,
            "attempt": token.attempt,
            "worker_id": self.worker_id,
            "func_path": token.func_path,
            "args": token.args,
            "kwargs": token.kwargs,
        }
        self.executor.conn.send({"task": payload})

    def _send_progress(self, running: Running, now: float) -> None:
        fraction, message = running.progress or (None, "")
        running.progress = None
        running.progress_sent_at = now
        ok = self._db(lambda: queue.report_progress(running.token, fraction, message))
        if ok is False:
            logger.warning("task %s was taken from this worker; stopping it", running.token.id)
            self._stop_task(None)

    def _finished(self, message: dict[str, Any]) -> None:
        running = self.running
        if running is None or running.stopped is not None:
            return
        self._drain_output(self.executor.output if self.executor else -1)
        peak = max(running.peak_rss, message.get("peak_rss_bytes") or 0) or None
        if running.progress is not None:
            token, (fraction, text) = running.token, running.progress
            self._queue_write(lambda: self._last_progress(token, fraction, text))
        if message["ok"]:
            ending = queue.Ending(Outcome.SUCCEEDED, peak_rss_bytes=peak)
            self._queue_write(Success(running.token, message["value"], ending))
            self.counts[0] += 1
            self._after_task()
        else:
            self._end(queue.Ending(Outcome.ERROR, message["error"], message["traceback"], peak,
                                   running.tail, message.get("exception_class", "")))

    def _end(self, ending: queue.Ending) -> None:
        """Record a failed attempt (retry, fail, cancel) and free the slot."""
        assert self.running is not None
        token = self.running.token
        logger.warning("task %s attempt %s ended %s: %s\n%s", token.id, token.attempt,
                       ending.outcome, ending.error, ending.traceback)
        peak = ending.peak_rss_bytes or self.running.peak_rss or None
        tail = ending.log_tail or self.running.tail or self._log_tail()
        final = queue.Ending(ending.outcome, ending.error, ending.traceback, peak, tail,
                             ending.exception_class)
        self._queue_write(lambda: self._record_failure(token, final))
        self.counts[1] += 1
        self._after_task()

    def _last_progress(self, token: ClaimedTask, fraction: float | None, text: str) -> None:
        queue.report_progress(token, fraction, text)

    def _log_tail(self) -> str:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.FileHandler):
                handler.flush()
                return logs.tail(Path(handler.baseFilename), TAIL_CHARS)
        return ""

    def _record_failure(self, token: ClaimedTask, ending: queue.Ending) -> None:
        state = queue.fail(token, ending)
        logger.info("task %s attempt %s: %s -> %s", token.id, token.attempt, ending.outcome,
                    state)

    def _after_task(self) -> None:
        self.running = None
        self.finished += 1
        limit = self.options.max_tasks
        if limit is not None and self.finished >= limit and not self.stop_reason:
            self.stop_reason = f"max tasks reached ({limit})"

    def _stop_task(self, ending: queue.Ending | None) -> None:
        """Kill the running task and its children now; record ``ending`` unless lost."""
        running = self.running
        assert running is not None
        running.stopped = ending or queue.Ending(Outcome.LEASE_EXPIRED)
        self._stop_executor(graceful=False)
        if ending is None:
            self.running = None
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

    def _queue_write(self, write: Callable[[], None]) -> None:
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

    def _db_write(self, write: Callable[[], None]) -> None:
        try:
            write()
        except LostAttempt as exc:
            logger.warning("result discarded: %s", exc)
        except DB_ERRORS as exc:
            self._lost_database(exc)
            raise _Retry from exc
        else:
            self.db_backoff = 0.0


class _Retry(Exception):
    pass


def exit_state(reason: str) -> str:
    return WorkerState.DEAD if reason else WorkerState.FAILED

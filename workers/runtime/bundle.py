"""Short tasks from one claim, run one after the other (``queue.holding``, SQLite).

The supervisor sends the executor the claimed task and the tasks held beside it in one
message; the executor runs them back to back and replies after each, as for a single
task. Before it begins a held task it passes the gate, two counters in shared memory
under a lock: how many tasks of the bundle it may begin, and how many it has. The
supervisor closes the gate when a task of the bundle runs long, when the worker stops, or
before its executor is killed or once it died, and then knows exactly which tasks began:
those that never did are queued again with their attempts uncounted. Successes wait in
the bundle and are written together, with the next claim.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from ..queue.hotpath import ClaimedTask
from .outbox import Success

LOCK_WAIT = 0.2  # seconds; an executor killed while holding the lock never lets it go


class Gate:
    """How many tasks of the bundle the executor may begin, and how many it began; made
    before the executor is forked, shared with it."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")
        self._lock = context.Lock()
        self._counts = context.RawArray("i", 2)  # may begin, began

    def open(self, size: int) -> None:
        """A bundle of ``size`` tasks is sent; the first has begun."""
        with self._lock:
            self._counts[0], self._counts[1] = size, 1

    def begin(self, index: int) -> bool:
        """In the executor: whether task ``index`` of the bundle may begin (it has, if so)."""
        with self._lock:
            if index >= self._counts[0]:
                return False
            self._counts[1] = index + 1
            return True

    def close(self) -> int:
        """No task begins any more; how many did. An executor that died holding the lock
        begins nothing more either: its count is read without it."""
        locked = self._lock.acquire(timeout=LOCK_WAIT)
        try:
            self._counts[0] = self._counts[1]
            return int(self._counts[1])
        finally:
            if locked:
                self._lock.release()


@dataclass
class Bundle:
    """The supervisor's view of the bundle in flight."""

    tokens: list[ClaimedTask]  # those that began or may still begin, in order
    cut_at: float  # monotonic: when the task now running has run too long to hold others
    current: int = 0  # the task whose reply comes next
    done: list[Success] = field(default_factory=list)  # successes not yet written
    closed: bool = False

    def next(self) -> ClaimedTask | None:
        """The task begun after the one that replied: None when the bundle is over."""
        self.current += 1
        if self.current >= len(self.tokens):
            return None
        return self.tokens[self.current]

    def close(self, gate: Gate) -> list[ClaimedTask]:
        """Close the gate: the tasks that will never begin, dropped from the bundle."""
        if self.closed:
            return []
        self.closed = True
        began = gate.close()
        unbegun = self.tokens[began:]
        del self.tokens[began:]
        return unbegun

    def began(self) -> bool:
        """Whether the task whose reply comes next ever began."""
        return self.current < len(self.tokens)


def began_at(token: ClaimedTask, moment: float | None) -> ClaimedTask:
    """A held task's token, with when it began (the executor's wall clock, SQLite's); until
    its reply says, a held task's token bears the moment of its claim."""
    if not token.held or moment is None:
        return token
    return replace(token, started_at=datetime.fromtimestamp(moment, UTC))

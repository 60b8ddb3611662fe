"""Writes the supervisor owes the database: kept in order until they land.

A write that fails because the database is unreachable waits and is retried, so a computed
result is never dropped. A write the database refuses for its content (an unexpected
DataError, IntegrityError...) is replaced by a smaller one that still ends the attempt with
a recorded error: no task's data can make its worker crash or loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError

from .. import queue
from ..queue import holding
from ..queue.hotpath import ClaimedTask
from ..states import Outcome, TaskState

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Success:
    """A result waiting to be written; merged with the next claim when there is one."""

    token: ClaimedTask
    value: Any
    ending: queue.Ending

    def __call__(self) -> float | None:
        queue.succeed(self.token, self.value, self.ending)
        return None


@dataclass(frozen=True, slots=True)
class Successes:
    """The results of a bundle's tasks (``runtime.bundle``): written together, with the
    next claim when there is one."""

    items: tuple[Success, ...]

    @property
    def token(self) -> ClaimedTask:
        return self.items[0].token

    @property
    def tokens(self) -> tuple[ClaimedTask, ...]:
        return tuple(item.token for item in self.items)

    def __call__(self) -> float | None:
        queue.succeed_all([(item.token, item.value, item.ending) for item in self.items])
        return None


@dataclass(frozen=True, slots=True)
class Release:
    """Held tasks that never began: queued again, their attempts uncounted."""

    tokens: tuple[ClaimedTask, ...]

    @property
    def token(self) -> ClaimedTask:
        return self.tokens[0]

    def __call__(self) -> float | None:
        released = holding.release(self.tokens)
        logger.info("queued again, never begun (attempts not counted): tasks %s", released)
        return None


@dataclass(frozen=True, slots=True)
class Begin:
    """A held task that runs long: its row says it began, and it holds its node's share."""

    token: ClaimedTask
    node: str

    def __call__(self) -> float | None:
        holding.begin(self.token, self.node)
        return None


@dataclass(frozen=True, slots=True)
class Failure:
    """An attempt that ended without success: retry, fail, cancel or quarantine its task."""

    token: ClaimedTask
    ending: queue.Ending
    minimal: bool = False

    def __call__(self) -> float | None:
        """Write it; return in how many seconds a retry is due, if one is."""
        verdict = queue.end_attempt(self.token, self.ending)
        logger.info("task %s attempt %s: %s -> %s", self.token.id, self.token.attempt,
                    self.ending.outcome, verdict.state)
        return verdict.delay if verdict.state == TaskState.QUEUED else None


@dataclass(frozen=True, slots=True)
class Progress:
    token: ClaimedTask
    fraction: float | None
    text: str

    def __call__(self) -> float | None:
        queue.report_progress(self.token, self.fraction, self.text)
        return None


type Write = Success | Successes | Release | Begin | Failure | Progress


def tokens(write: Write) -> tuple[ClaimedTask, ...]:
    """The attempts a write is about."""
    return write.tokens if isinstance(write, Successes | Release) else (write.token,)


def instead(write: Write, exc: DatabaseError) -> list[Write]:
    """What to write when the database refused ``write`` for its content (none: drop it)."""
    if isinstance(write, Successes):  # each on its own: only the refused one fails
        return list(write.items)
    replacement = _instead(write, exc)
    return [] if replacement is None else [replacement]


def _instead(write: Write, exc: DatabaseError) -> Write | None:
    why = f"{type(exc).__name__}: {exc}"
    if isinstance(write, Success):
        error = f"The result could not be recorded: the database refused it ({why})"
        return Failure(write.token, queue.Ending(Outcome.ERROR, error,
                                                 peak_rss_bytes=write.ending.peak_rss_bytes))
    if isinstance(write, Failure) and not write.minimal:
        error = (f"{write.ending.outcome}: the full error could not be recorded: the database "
                 f"refused it ({why})")
        return Failure(write.token, queue.Ending(write.ending.outcome, error), minimal=True)
    return None

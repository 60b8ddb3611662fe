"""Exception classes named by TaskErrors of attempts that ended without a Python exception.

The task's code raised nothing: Crucible stopped the attempt (cancel, abort), or the process
running it went away. A timed-out attempt is reported as the built-in ``TimeoutError``.
"""

from __future__ import annotations

from ..exceptions import CrucibleError


class AttemptFailed(CrucibleError):
    """An attempt ended without an exception from the task's own code."""


class TaskCancelled(AttemptFailed):
    """The task was cancelled while it ran."""


class WorkerAborted(AttemptFailed):
    """The worker running the task was aborted (by an operator or a signal)."""


class TaskCrashed(AttemptFailed):
    """The process running the task died (a crash, or killed, e.g. out of memory)."""


class WorkerLost(AttemptFailed):
    """The worker running the task stopped (died, or its heartbeat was lost)."""


class LeaseExpired(AttemptFailed):
    """The worker did not renew its claim on the task in time."""

"""The engine's exceptions; the edges translate them into CommandError, HTTP or JSON errors."""

from __future__ import annotations


class CrucibleError(Exception):
    """Base of every error the engine raises on purpose."""


class InvalidTaskSpec(CrucibleError):
    """A task cannot be enqueued as described (bad path, arguments, priority...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class CallMismatch(InvalidTaskSpec):
    """The arguments do not fit the task function's signature."""


class TooLarge(InvalidTaskSpec):
    """The task needs more memory (or CPUs) than any node's whole budget; force queues it."""


class IllegalTransition(CrucibleError):
    """A state change the state machine does not allow."""


class LostAttempt(CrucibleError):
    """A write for an attempt that is no longer current: stop working on that task."""


class LaunchRefused(CrucibleError):
    """A spawned worker could not prove its launch token."""


class LaunchFailed(CrucibleError):
    """The operating system would not start a worker process."""


class AdmissionRefused(CrucibleError):
    """Starting more workers would exceed capacity.

    ``reason`` is the limit's sentence as the panel shows it; ``forceable`` is False when the
    limit is WORKER_MAX_COUNT, which force never passes (memory and cores it does).
    """

    def __init__(self, message: str, *, reason: str, forceable: bool) -> None:
        super().__init__(message)
        self.reason = reason
        self.forceable = forceable


class WorkerNotFound(CrucibleError):
    """No worker with that id."""


class TaskNotFound(CrucibleError):
    """No task with that id."""


class InvalidQueueName(CrucibleError):
    """A queue name that no task could carry (empty, too long, a NUL byte)."""

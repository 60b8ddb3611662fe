"""What a running task may ask of Crucible: who it is, and a way to report progress.

    from workers.context import current

    def simulate(steps: int) -> dict:
        ctx = current()
        for i in range(steps):
            ...
            ctx.progress((i + 1) / steps, f"step {i + 1} of {steps}")

``ctx.attempt`` counts from 1; ``ctx.idempotency_key`` is stable across attempts.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

_current: ContextVar[TaskContext | None] = ContextVar("crucible_task", default=None)


@dataclass(frozen=True, slots=True)
class TaskContext:
    task_id: int
    attempt: int
    worker_id: int
    _report: Callable[[float | None, str], None] = field(repr=False)

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt of this task (and operator retries of it): a key to
        make side effects idempotent, since a task may run again after a worker dies."""
        return f"crucible-task-{self.task_id}"

    def progress(self, fraction: float | None, message: str = "") -> None:
        """Report how far the task is (0.0 to 1.0) and what it is doing."""
        if fraction is not None and not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress fraction must be within 0..1, got {fraction}")
        self._report(fraction, message)


def current() -> TaskContext:
    """The context of the task running in this process."""
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError("workers.context.current() called outside a running task")
    return ctx


def activate(ctx: TaskContext | None) -> None:
    _current.set(ctx)

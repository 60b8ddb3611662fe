"""Refusals of the runs service; the edges translate them (400, 404, 409, CommandError)."""

from __future__ import annotations

from ..exceptions import CrucibleError, InvalidTaskSpec


class InvalidRun(InvalidTaskSpec):
    """A run document that cannot be submitted; ``field`` names where (``tasks[2].depends_on``)."""


class RunNotFound(CrucibleError):
    """No run with that id."""


class RunConflict(CrucibleError):
    """The run's state does not allow this (pausing a finished run...)."""


class LockHeld(RunConflict):
    """A run asked for lock keys another active run holds, and chose not to wait."""

    def __init__(self, message: str, holders: dict[str, int]) -> None:
        super().__init__(message)
        self.holders = holders

"""The simulations app's exceptions; views, admin and commands translate them at the edge."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class SimulationError(Exception):
    """Base of every error the simulations app raises on purpose."""


@dataclass(frozen=True, slots=True)
class ParameterError:
    """One refused parameter: its name and why, e.g. ``h: 5e6 is outside 1..1e5 W/m²K``."""

    name: str
    message: str

    def __str__(self) -> str:
        return f"{self.name}: {self.message}"


class InvalidParameters(SimulationError):
    """Parameters (or a sweep grid) that a kind refuses; nothing was written."""

    def __init__(self, errors: Iterable[ParameterError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(error) for error in self.errors))

    @classmethod
    def one(cls, name: str, message: str) -> InvalidParameters:
        return cls([ParameterError(name, message)])


class UnknownKind(SimulationError):
    """No simulation kind is registered under that name."""


class FileRefused(SimulationError):
    """A file name that does not lead to a file inside the work directory."""


class ProgramFailed(SimulationError):
    """An external program ended with a non-zero exit code."""

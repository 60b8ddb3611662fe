"""System checks of a CrucibleBackend's configuration (run by Django's ``check_tasks``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning

from .limits import MAX_QUEUE_LENGTH

if TYPE_CHECKING:
    from .backend import CrucibleBackend


def check_backend(backend: CrucibleBackend) -> list[CheckMessage]:
    where = f"TASKS[{backend.alias!r}]"
    found = [*_app(where), *_queues(backend, where)]
    found += [
        Error(f"{where}: {problem}.", id="workers.E104",
              hint="See docs/tasks-backend.md for the OPTIONS Crucible understands.")
        for problem in backend.option_problems
    ]
    return found


def _app(where: str) -> list[CheckMessage]:
    if apps.is_installed("workers"):
        return []
    return [Error(f"{where} uses CrucibleBackend, but the 'workers' app is not installed.",
                  hint="Add 'workers' to INSTALLED_APPS.", id="workers.E101")]


def _queues(backend: CrucibleBackend, where: str) -> list[CheckMessage]:
    declared = backend.declared_queues
    if declared is None:
        return _unserved(backend, where)
    if isinstance(declared, str | bytes) or not isinstance(declared, Iterable):
        return [Error(f"{where}: QUEUES must be a list of queue names, not {declared!r}.",
                      id="workers.E102")]
    bad = [name for name in declared
           if not isinstance(name, str) or not name or len(name) > MAX_QUEUE_LENGTH]
    if bad:
        return [Error(f"{where}: QUEUES has invalid queue names: {bad!r}.",
                      hint=f"A queue name is a non-empty string of at most {MAX_QUEUE_LENGTH}"
                      " characters.", id="workers.E103")]
    return _unserved(backend, where)


def _unserved(backend: CrucibleBackend, where: str) -> list[CheckMessage]:
    """Warn when no queue of the backend is the one workers serve unless told otherwise."""
    worker_settings = getattr(settings, "CRUCIBLE", None)
    default_queue = getattr(worker_settings, "queue_name", None)
    if not backend.queues or default_queue is None or default_queue in backend.queues:
        return []
    return [Warning(
        f"{where}: QUEUES {sorted(backend.queues)} does not include {default_queue!r}, the"
        " queue workers serve by default (WORKER_QUEUE_NAME).",
        hint="Start workers with `manage.py runworker --queue NAME` for each of these queues.",
        id="workers.W101",
    )]

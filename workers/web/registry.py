"""The allow-list of tasks that may be submitted from the web.

Running any importable function named in a request would be remote code execution, so the
JSON API enqueues only:

* the ``@task``-decorated functions (``django.tasks.Task`` objects) of each installed app's
  ``tasks`` module, found the way the admin finds ``admin`` modules; and
* the dotted paths an operator lists in the optional ``CRUCIBLE_TASK_ALLOWLIST`` setting.

A path is checked against this list before anything is imported for it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from importlib import import_module
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.tasks import Task as DjangoTask
from django.utils.module_loading import module_has_submodule

from .. import queue
from ..exceptions import InvalidTaskSpec
from ..models import Task
from ..spec import TaskSpec

logger = logging.getLogger(__name__)

SETTING = "CRUCIBLE_TASK_ALLOWLIST"
MODULE = "tasks"


def _app_tasks(app_name: str, module: Any) -> set[str]:
    """The paths of the Task objects in one app's ``tasks`` module, and their aliases there."""
    found = set()
    for attribute, value in vars(module).items():
        if isinstance(value, DjangoTask):
            found.add(value.module_path)
            found.add(f"{app_name}.{MODULE}.{attribute}")
    return found


@functools.cache
def discovered() -> frozenset[str]:
    """Import ``<app>.tasks`` of every installed app once; collect its ``@task`` functions."""
    found: set[str] = set()
    for app in apps.get_app_configs():
        if module_has_submodule(app.module, MODULE):
            module = import_module(f"{app.name}.{MODULE}")
            found |= _app_tasks(app.name, module)
    logger.debug("task allow-list: %d discovered paths", len(found), extra={"tasks": len(found)})
    return frozenset(found)


def configured() -> frozenset[str]:
    """The dotted paths of the ``CRUCIBLE_TASK_ALLOWLIST`` setting (empty by default)."""
    paths: object = getattr(settings, SETTING, ())
    # A bare string would otherwise be read as a set of one-letter "paths".
    if not isinstance(paths, list | tuple | set | frozenset) or not all(
        isinstance(path, str) for path in paths
    ):
        raise ImproperlyConfigured(f"{SETTING} must be a list of dotted paths")
    return frozenset(paths)


def allowed() -> frozenset[str]:
    return discovered() | configured()


def is_allowed(func_path: str) -> bool:
    return func_path in allowed()


def require(func_path: str) -> None:
    """Refuse a path that is not on the allow-list, before anything imports it."""
    if not is_allowed(func_path):
        raise InvalidTaskSpec(
            "func_path",
            f"{func_path!r} is not an allowed task: only @task functions of the project's "
            f"apps and the paths in {SETTING} may be submitted",
        )


def enqueue(spec: TaskSpec) -> Task:
    """Enqueue a task from an untrusted caller: allow-listed paths only."""
    require(spec.func_path)
    return queue.enqueue(spec)


def enqueue_many(specs: Sequence[TaskSpec]) -> list[Task]:
    """``queue.enqueue_many`` from an untrusted caller: every path allow-listed, a refusal
    naming the task's index."""
    allowed: set[str] = set()
    for index, spec in enumerate(specs):
        if spec.func_path in allowed:
            continue
        try:
            require(spec.func_path)
        except InvalidTaskSpec as exc:
            raise InvalidTaskSpec(f"tasks[{index}].{exc.field}", exc.message) from exc
        allowed.add(spec.func_path)
    return queue.enqueue_many(specs)


@receiver(setting_changed)
def _forget_discovered(*, setting: str, **kwargs: Any) -> None:
    if setting == "INSTALLED_APPS":
        discovered.cache_clear()

"""A Django tasks backend: ``@task`` functions run on Crucible's workers.

``TASKS = {"default": {"BACKEND": "workers.backends.CrucibleBackend"}}``; see
docs/tasks-backend.md.
"""

from .backend import CrucibleBackend
from .task import CrucibleTask, enqueue_many

__all__ = ["CrucibleBackend", "CrucibleTask", "enqueue_many"]

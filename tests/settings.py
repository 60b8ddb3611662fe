"""Settings for the test suite: the project's own, plus a test app with side tables."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from config.settings import *  # noqa: F403
from config.settings import CRUCIBLE, DATABASES, INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# No collected static files in tests: serve from the finders, from an empty root that
# exists (WhiteNoise warns about a missing one, and warnings are errors here).
WHITENOISE_AUTOREFRESH = True
STATIC_ROOT = Path(tempfile.gettempdir()) / "crucible-test-static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Worker processes started by the tests need a database file they can open too, and
# test runs side by side (developers, CI) must never share or drop each other's database.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    _dir = Path(os.environ.get("CRUCIBLE_TEST_DB_DIR", tempfile.gettempdir()))
    DATABASES["default"]["TEST"] = {"NAME": str(_dir / f"crucible-test-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_crucible_{os.getpid()}"}

# Scheduling by memory budgets each node's CPUs (its cores) and a task that declares no
# memory (WORKER_MEMORY_PER_TASK_MB, 8 GB): on a small CI machine that would let one or two
# of the suite's tiny tasks run at once. The suite budgets generously instead, except where
# a test sets these itself (the tests of scheduling do, for the worker processes they start).
if "WORKER_NODE_CPUS" not in os.environ:
    CRUCIBLE = dataclasses.replace(CRUCIBLE, node_cpus=64)
if "WORKER_MEMORY_PER_TASK_MB" not in os.environ:
    CRUCIBLE = dataclasses.replace(CRUCIBLE, memory_per_task_mb=64)

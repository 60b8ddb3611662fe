"""Settings for the peer benchmark project, chosen by environment variables.

BENCH_PEER       tasks_db | procrastinate
BENCH_DB         sqlite | pg
BENCH_DB_NAME    SQLite file path, or PostgreSQL database name
BENCH_STAMP_FILE file the `stamp` tasks append "<sample> <time.time()>" lines to
BENCH_CONN_MAX_AGE  Django's CONN_MAX_AGE (default 0, Django's own default)

Everything else is Django's or the peer's default. The SQLite options are the
ones Crucible itself uses (config/settings.py), so both run on the same footing.
"""

from __future__ import annotations

import os

PEER = os.environ.get("BENCH_PEER", "tasks_db")
DB = os.environ.get("BENCH_DB", "sqlite")
DB_NAME = os.environ.get("BENCH_DB_NAME", "bench_peer.sqlite3")
STAMP_FILE = os.environ.get("BENCH_STAMP_FILE", "stamps.txt")
DONE_FILE = os.environ.get("BENCH_DONE_FILE", "done.txt")
CONN_MAX_AGE = int(os.environ.get("BENCH_CONN_MAX_AGE", "0"))

SECRET_KEY = "peer-bench-not-secret"  # throwaway local project, never served
DEBUG = False
ALLOWED_HOSTS: list[str] = []
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = ["django.contrib.contenttypes"]

if DB == "sqlite":
    _database: dict[str, object] = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DB_NAME,
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
elif DB == "pg":
    _database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DB_NAME,
        "HOST": os.environ.get("BENCH_PG_HOST", "127.0.0.1"),
        "PORT": os.environ.get("BENCH_PG_PORT", "5432"),
        "USER": os.environ.get("BENCH_PG_USER", "postgres"),
    }
else:
    raise ValueError(f"BENCH_DB must be sqlite or pg, not {DB!r}")
_database["CONN_MAX_AGE"] = CONN_MAX_AGE
DATABASES = {"default": _database}

if PEER == "tasks_db":
    INSTALLED_APPS.append("django_tasks_db")
    TASKS = {
        "default": {
            "BACKEND": "django_tasks_db.DatabaseBackend",
            "QUEUES": ["default"],
        }
    }
elif PEER == "procrastinate":
    INSTALLED_APPS.append("procrastinate.contrib.django")
    PROCRASTINATE_IMPORT_PATHS = ["peerbench.procrastinate_tasks"]
elif PEER == "huey":
    INSTALLED_APPS += ["huey.contrib.djhuey", "peerbench.huey_app"]  # run_huey finds its tasks
    # `immediate` defaults to DEBUG (False here); the consumer's options are the ones
    # `run_huey -k process -w 2` is given on its command line (bench/peers/run.py).
    HUEY = {
        "huey_class": "huey.SqliteHuey",
        "name": "peerbench",
        "filename": os.environ.get("BENCH_HUEY_FILE", "huey.sqlite3"),
    }
elif PEER == "q2":
    INSTALLED_APPS.append("django_q")
    # The ORM broker and 2 workers; every other option is django-q2's default
    # (poll 0.2 s, save_limit 250, retry 60 s, no timeout).
    Q_CLUSTER = {"name": "peerbench", "workers": 2, "orm": "default"}
else:
    raise ValueError(f"BENCH_PEER must be tasks_db, procrastinate, huey or q2, not {PEER!r}")

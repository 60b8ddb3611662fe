"""Crucible's settings: every value comes from the environment through django-environ."""

from __future__ import annotations

import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from workers import conf as worker_conf

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = BASE_DIR / "data"

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)


def _secret_key() -> str:
    """Use SECRET_KEY, or a key generated once and kept in the data folder."""
    configured: str | None = env.str("SECRET_KEY", default=None)
    if configured:
        return configured
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def _bool(name: str, default: bool) -> bool:
    try:
        return bool(env.bool(name, default=default))
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is invalid: expected true or false") from exc


SECRET_KEY = _secret_key()
DEBUG = _bool("DEBUG", False)
ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # SimpleAdminConfig: admin modules are discovered by config.urls, so worker
    # processes never import the admin (smaller, faster workers).
    "workers.panel.apps.CrucibleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "workers",
    "simulations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


# libpq parameters so that an unreachable server fails a connection within seconds instead
# of blocking a worker: give up connecting after 5 s; probe an idle connection after 10 s,
# every 5 s, 3 times; drop one whose sent data goes unacknowledged for 25 s (keepalives stop
# while data is in flight). DATABASE_URL query options override each, e.g.
# ?connect_timeout=10&keepalives_idle=30.
POSTGRES_FAIL_FAST = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 25_000,  # milliseconds
}


# SQLite copies its write-ahead log back into the database (a checkpoint, with an fsync)
# once the log holds this many pages; SQLite's default, 1,000, made a draining worker
# checkpoint every few hundred tasks, and each wrote the same hot pages again: 20,000 (up
# to 80 MB of log) drained 15-27 % faster (bench/README). A commit is synced to disk at a
# checkpoint (synchronous=NORMAL: a process's crash loses nothing, a power cut what came
# after the last one), so the workers' tick also checkpoints every few seconds.
SQLITE_WAL_PAGES = 20_000


def _database() -> dict[str, object]:
    default_url = f"sqlite:///{DATA_DIR / 'crucible.sqlite3'}"
    try:
        db: dict[str, object] = env.db("DATABASE_URL", default=default_url)
    except (ValueError, KeyError, ImproperlyConfigured) as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is invalid: {exc}") from exc
    if db["ENGINE"] == "django.db.backends.sqlite3":
        Path(str(db["NAME"])).parent.mkdir(parents=True, exist_ok=True)
        db["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                            f" PRAGMA wal_autocheckpoint={SQLITE_WAL_PAGES};",
        }
    elif db["ENGINE"] == "django.db.backends.postgresql":
        db.setdefault("CONN_HEALTH_CHECKS", True)
        given = db.get("OPTIONS")
        db["OPTIONS"] = {**POSTGRES_FAIL_FAST, **(given if isinstance(given, dict) else {})}
    else:
        raise ImproperlyConfigured(
            f"DATABASE_URL names {db['ENGINE']}: Crucible supports SQLite and PostgreSQL"
        )
    return db


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# `make run` creates the "admin" superuser with this password (generated when empty).
SUPERUSER_PASSWORD: str = env.str("DJANGO_SUPERUSER_PASSWORD", default="")

# Django's tasks framework: `@task` functions are enqueued into Crucible and run by its
# workers (docs/tasks-backend.md). QUEUES empty: any queue name, as for Crucible's own
# tasks; list names to refuse others. OPTIONS: defaults for max_attempts, timeout,
# memory_mb, retry_backoff (else the WORKER_* settings).
TASKS = {
    "default": {
        "BACKEND": "workers.backends.CrucibleBackend",
        "QUEUES": [],
        "OPTIONS": {},
    },
}

# Dotted paths the JSON API may enqueue besides the apps' `@task` functions (comma-separated).
CRUCIBLE_TASK_ALLOWLIST: list[str] = env.list("CRUCIBLE_TASK_ALLOWLIST", default=[])

# Keep each simulation's work directory (results, plots, logs) after the row is deleted.
SIMULATIONS_KEEP_WORK_DIRS = _bool("SIMULATIONS_KEEP_WORK_DIRS", True)

CRUCIBLE = worker_conf.from_env(env, BASE_DIR)

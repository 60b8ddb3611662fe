"""The one typed settings object of the worker engine, read from the environment once."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import environ
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    max_count: int = 4
    task_timeout: float = 172800.0
    startup_timeout: float = 30.0
    heartbeat_interval: float = 30.0
    log_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "crucible-logs")
    queue_name: str = "default"
    cleanup_age: float = 7 * 86400.0
    lease_ttl: float = 120.0
    lease_renew_interval: float | None = None  # None: a third of lease_ttl
    poll_interval: float = 2.0
    tick_interval: float = 2.0
    node_address: str = field(default_factory=socket.gethostname)
    node_labels: dict[str, str] = field(default_factory=dict)
    memory_per_task_mb: int = 8192
    memory_guard_mb: int = 2048
    memory_limit_mb: int = 0  # a task's limit when it declares none; 0: no limit
    memory_retry_factor: float = 1.5  # a task stopped for memory is retried with this much more
    executor_max_rss_mb: int = 0  # 0: the executor's size at start plus 100 MB
    node_memory_mb: int | None = None  # None: free memory at start minus the guard, followed
    node_cpus: int | None = None  # None: the node's cores
    memory_starvation_s: float = 600.0  # a task waiting longer is no longer overtaken
    max_attempts: int = 3
    retry_backoff: float = 10.0
    retry_backoff_max: float = 3600.0
    quarantine_after: int = 3
    stalled_after: float = 180.0
    heartbeat_retention: float = 86400.0
    result_retention: float = 7 * 86400.0  # 0 keeps finished tasks for ever
    work_dir: Path = field(default_factory=lambda: Path("data") / "work")
    doorbell_dir: Path | None = None
    prepared_statements: bool = True
    # SQLite: a busy worker claims up to this many tasks of a function whose last runs
    # took under short_task_ms each (1: one at a time; ``runtime.bundle``)
    short_tasks_per_claim: int = 16
    short_task_ms: float = 5.0
    launch_token: str = field(default="", repr=False)

    @property
    def renew_every(self) -> float:
        """Seconds between lease renewals of a running task."""
        return self.lease_renew_interval or self.lease_ttl / 3

    @property
    def lease_margin(self) -> float:
        """How long before its lease runs out a worker that could not renew stops its task.

        Measured on the worker's monotonic clock from the moment the renewal (or claim) was
        sent: the database's deadline is at least a TTL after that moment, as long as the
        two clocks run at about the same rate (their offset does not matter).
        """
        return max(0.5, 0.1 * self.lease_ttl)


def parse_labels(raw: str) -> dict[str, str]:
    """Parse ``k=v,k2=v2`` into a dict, refusing malformed pairs."""
    labels: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in raw.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value, got {pair!r}")
        labels[key.strip()] = value.strip()
    return labels


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _at_least_one(value: int) -> int:
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _factor(value: float) -> float:
    if value < 1:
        raise ValueError("must be at least 1 (a factor that never lowers memory)")
    return value


def _non_negative(value: int) -> int:
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _read[T](
    env: environ.Env,
    name: str,
    cast: Callable[[str], T],
    default: T,
    check: Callable[[T], T] | None = None,
) -> T:
    raw = env.str(name, default=None)
    if raw is None:
        return default
    try:
        value = cast(raw)
        return check(value) if check else value
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={raw!r} is invalid: {exc}") from exc


def _optional_number(raw: str) -> float | None:
    return _number(raw)


def _optional_positive(value: float | None) -> float | None:
    return None if value is None else _positive(value)


def _optional_integer(raw: str) -> int | None:
    return _integer(raw)


def _optional_at_least_one(value: int | None) -> int | None:
    return None if value is None else _at_least_one(value)


def _non_negative_number(value: float) -> float:
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _integer(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("expected a whole number") from None


def _number(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError("expected a number") from None


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError("expected true or false")


def _text(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def from_env(env: environ.Env, base_dir: Path) -> WorkerSettings:
    """Build the settings from ``WORKER_*`` variables; a bad value names its variable."""
    d = WorkerSettings()
    values: dict[str, Any] = {
        "max_count": _read(env, "WORKER_MAX_COUNT", _integer, d.max_count, _at_least_one),
        "task_timeout": _read(env, "WORKER_TASK_TIMEOUT", _number, d.task_timeout, _positive),
        "startup_timeout": _read(
            env, "WORKER_STARTUP_TIMEOUT", _number, d.startup_timeout, _positive
        ),
        "heartbeat_interval": _read(
            env, "WORKER_HEARTBEAT_INTERVAL", _number, d.heartbeat_interval, _positive
        ),
        "log_dir": _read(env, "WORKER_LOG_DIR", Path, base_dir / "data" / "logs"),
        "queue_name": _read(env, "WORKER_QUEUE_NAME", _text, d.queue_name),
        "cleanup_age": _read(env, "WORKER_CLEANUP_AGE", _number, d.cleanup_age, _positive),
        "lease_ttl": _read(env, "WORKER_LEASE_TTL", _number, d.lease_ttl, _positive),
        "lease_renew_interval": _read(
            env, "WORKER_LEASE_RENEW_INTERVAL", _optional_number, None, _optional_positive
        ),
        "poll_interval": _read(env, "WORKER_POLL_INTERVAL", _number, d.poll_interval, _positive),
        "tick_interval": _read(env, "WORKER_TICK_INTERVAL", _number, d.tick_interval, _positive),
        "node_address": _read(env, "WORKER_NODE_ADDRESS", _text, d.node_address),
        "node_labels": _read(env, "WORKER_NODE_LABELS", parse_labels, d.node_labels),
        "memory_per_task_mb": _read(
            env, "WORKER_MEMORY_PER_TASK_MB", _integer, d.memory_per_task_mb, _at_least_one
        ),
        "memory_guard_mb": _read(
            env, "WORKER_MEMORY_GUARD_MB", _integer, d.memory_guard_mb, _non_negative
        ),
        "memory_limit_mb": _read(
            env, "WORKER_MEMORY_LIMIT_MB", _integer, d.memory_limit_mb, _non_negative
        ),
        "memory_retry_factor": _read(
            env, "WORKER_MEMORY_RETRY_FACTOR", _number, d.memory_retry_factor, _factor
        ),
        "executor_max_rss_mb": _read(
            env, "WORKER_EXECUTOR_MAX_RSS_MB", _integer, d.executor_max_rss_mb, _non_negative
        ),
        "node_memory_mb": _read(env, "WORKER_NODE_MEMORY_MB", _optional_integer, None,
                                _optional_at_least_one),
        "node_cpus": _read(env, "WORKER_NODE_CPUS", _optional_integer, None,
                           _optional_at_least_one),
        "memory_starvation_s": _read(
            env, "WORKER_MEMORY_STARVATION_S", _number, d.memory_starvation_s,
            _non_negative_number,
        ),
        "max_attempts": _read(env, "WORKER_MAX_ATTEMPTS", _integer, d.max_attempts, _at_least_one),
        "retry_backoff": _read(env, "WORKER_RETRY_BACKOFF", _number, d.retry_backoff, _positive),
        "retry_backoff_max": _read(
            env, "WORKER_RETRY_BACKOFF_MAX", _number, d.retry_backoff_max, _positive
        ),
        "quarantine_after": _read(
            env, "WORKER_QUARANTINE_AFTER", _integer, d.quarantine_after, _at_least_one
        ),
        "stalled_after": _read(env, "WORKER_STALLED_AFTER", _number, d.stalled_after, _positive),
        "heartbeat_retention": _read(
            env, "WORKER_HEARTBEAT_RETENTION", _number, d.heartbeat_retention, _positive
        ),
        "result_retention": _read(
            env, "WORKER_RESULT_RETENTION", _number, d.result_retention, _non_negative_number
        ),
        "work_dir": _read(env, "WORKER_WORK_DIR", Path, base_dir / "data" / "work"),
        "doorbell_dir": _read(env, "WORKER_DOORBELL_DIR", Path, None),
        "prepared_statements": _read(
            env, "WORKER_PREPARED_STATEMENTS", _flag, d.prepared_statements
        ),
        "short_tasks_per_claim": _read(
            env, "WORKER_SHORT_TASKS_PER_CLAIM", _integer, d.short_tasks_per_claim,
            _at_least_one,
        ),
        "short_task_ms": _read(
            env, "WORKER_SHORT_TASK_MS", _number, d.short_task_ms, _non_negative_number
        ),
        "launch_token": env.str("WORKER_LAUNCH_TOKEN", default=""),
    }
    return _checked(WorkerSettings(**values))


def _checked(settings: WorkerSettings) -> WorkerSettings:
    """Refuse timings that leave a running task no room to renew its lease."""
    renew, ttl = settings.renew_every, settings.lease_ttl
    if renew > ttl / 3:
        raise ImproperlyConfigured(
            f"WORKER_LEASE_RENEW_INTERVAL ({renew:g} s) must be at most a third of "
            f"WORKER_LEASE_TTL ({ttl:g} s), so that two renewals can fail before the lease ends."
        )
    if ttl < 3.0:
        raise ImproperlyConfigured(
            f"WORKER_LEASE_TTL ({ttl:g} s) leaves no room for renewals: it must be at least 3 s "
            "(renewed every WORKER_LEASE_RENEW_INTERVAL, by default a third of it)."
        )
    return settings


def get() -> WorkerSettings:
    """The settings object the running project was configured with."""
    conf: WorkerSettings = settings.CRUCIBLE
    return conf

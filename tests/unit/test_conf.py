"""Settings come from the environment; a bad value stops start-up naming its variable."""

from __future__ import annotations

from pathlib import Path

import environ
import pytest
from django.core.exceptions import ImproperlyConfigured

from workers.conf import WorkerSettings, from_env, parse_labels


def settings_from(monkeypatch: pytest.MonkeyPatch, **values: str) -> WorkerSettings:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return from_env(environ.Env(), Path("/srv/crucible"))


def test_defaults_are_the_documented_ones(monkeypatch):
    for name in ["WORKER_MAX_COUNT", "WORKER_TASK_TIMEOUT", "WORKER_HEARTBEAT_INTERVAL"]:
        monkeypatch.delenv(name, raising=False)
    conf = settings_from(monkeypatch)
    assert conf.max_count == 4
    assert conf.task_timeout == 172800
    assert conf.startup_timeout == 30
    assert conf.heartbeat_interval == 30
    assert conf.stalled_after == 180
    assert conf.memory_per_task_mb == 8192
    assert conf.work_dir == Path("/srv/crucible/data/work")
    # the project's own, as the work directories: two checkouts on one machine never
    # write one task id's log to the same file
    assert conf.log_dir == Path("/srv/crucible/data/logs")
    assert conf.prepared_statements is True


def test_values_are_read_and_typed(monkeypatch):
    conf = settings_from(
        monkeypatch,
        WORKER_MAX_COUNT="8",
        WORKER_HEARTBEAT_INTERVAL="2.5",
        WORKER_QUEUE_NAME="gpu",
        WORKER_NODE_LABELS="zone=a, gpu=yes",
        WORKER_LOG_DIR="/var/log/crucible",
        WORKER_PREPARED_STATEMENTS="off",
    )
    assert conf.max_count == 8
    assert conf.heartbeat_interval == 2.5
    assert conf.queue_name == "gpu"
    assert conf.node_labels == {"zone": "a", "gpu": "yes"}
    assert conf.log_dir == Path("/var/log/crucible")
    assert conf.prepared_statements is False


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WORKER_MAX_COUNT", "four", "WORKER_MAX_COUNT='four' is invalid: expected a whole number"),
        ("WORKER_MAX_COUNT", "0", "WORKER_MAX_COUNT='0' is invalid: must be at least 1"),
        ("WORKER_TASK_TIMEOUT", "-5", "WORKER_TASK_TIMEOUT='-5' is invalid: must be greater"),
        ("WORKER_HEARTBEAT_INTERVAL", "soon", "WORKER_HEARTBEAT_INTERVAL='soon' is invalid"),
        ("WORKER_NODE_LABELS", "zone", "WORKER_NODE_LABELS='zone' is invalid: expected key=value"),
        ("WORKER_QUEUE_NAME", " ", "WORKER_QUEUE_NAME=' ' is invalid: must not be empty"),
        ("WORKER_PREPARED_STATEMENTS", "maybe",
         "WORKER_PREPARED_STATEMENTS='maybe' is invalid: expected true or false"),
    ],
)
def test_a_bad_value_names_its_variable(monkeypatch, name, value, message):
    with pytest.raises(ImproperlyConfigured) as caught:
        settings_from(monkeypatch, **{name: value})
    assert message in str(caught.value)


def test_labels_parse_and_refuse():
    assert parse_labels("") == {}
    assert parse_labels("a=1,b=") == {"a": "1", "b": ""}
    with pytest.raises(ValueError, match="expected key=value"):
        parse_labels("=1")


def test_lease_renewals_default_to_a_third_of_the_lease(monkeypatch):
    conf = settings_from(monkeypatch, WORKER_LEASE_TTL="60")
    assert conf.renew_every == 20
    assert conf.lease_margin == 6  # 10 % of the lease, at least 0.5 s


@pytest.mark.parametrize(
    ("ttl", "renew"), [("60", "30"), ("2", "")],
)
def test_a_lease_that_leaves_no_room_for_renewals_is_refused_naming_both(monkeypatch, ttl,
                                                                         renew):
    values = {"WORKER_LEASE_TTL": ttl}
    if renew:
        values["WORKER_LEASE_RENEW_INTERVAL"] = renew
    with pytest.raises(ImproperlyConfigured) as refused:
        settings_from(monkeypatch, **values)
    assert "WORKER_LEASE_TTL" in str(refused.value)
    assert "WORKER_LEASE_RENEW_INTERVAL" in str(refused.value)

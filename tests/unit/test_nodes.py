"""The machine's identity, and refusing a second machine that uses another's node address."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models import Value
from django.db.models.functions import Now
from django.utils import timezone

from workers.exceptions import LaunchRefused
from workers.models import Worker
from workers.pool import nodes
from workers.states import WorkerState

pytestmark = pytest.mark.django_db


MACHINE_ID = "3d1219c7c4c5404aaa1f6d2a48adfda4"


def test_the_host_id_comes_from_the_first_machine_id_file_that_has_one(tmp_path):
    empty, systemd, dbus = tmp_path / "empty", tmp_path / "machine-id", tmp_path / "dbus-id"
    empty.write_text("\n")
    systemd.write_text(f"{MACHINE_ID}\n")
    dbus.write_text("ffffffffffffffffffffffffffffffff\n")
    files = (tmp_path / "missing", empty, systemd, dbus)
    assert nodes._machine_id(files) == MACHINE_ID
    host = nodes._host_id(files)
    assert host == nodes._host_id((systemd,))
    assert host != nodes._host_id((dbus,))


def test_the_host_id_never_reveals_the_machine_id(tmp_path):
    (tmp_path / "machine-id").write_text(MACHINE_ID)
    host = nodes._host_id((tmp_path / "machine-id",))
    assert len(host) == 32
    assert MACHINE_ID[:8] not in host


def test_without_a_machine_id_the_host_id_is_still_stable(tmp_path):
    first = nodes._host_id((tmp_path / "missing",))
    nodes._host_id.cache_clear()
    assert first and nodes._host_id((tmp_path / "missing",)) == first
    assert nodes._fallback_id() == nodes._fallback_id()


def _other_machine(node: str, heartbeat_age: float,
                   state: str = WorkerState.RUNNING) -> Worker:
    row = Worker.objects.create(node=node, state=state, host_id="other-machine")
    Worker.objects.filter(pk=row.pk).update(
        last_heartbeat=Now() - Value(dt.timedelta(seconds=heartbeat_age)))
    return row


def test_a_second_machine_on_a_live_address_is_refused_naming_it(crucible):
    other = _other_machine("lab-1", heartbeat_age=5)
    with pytest.raises(LaunchRefused, match="'lab-1'") as refused:
        nodes.check_address("lab-1", "this-machine")
    assert "Give each machine its own WORKER_NODE_ADDRESS" in str(refused.value)
    assert f"worker {other.pk}" in str(refused.value)


@pytest.mark.parametrize(
    ("node", "host", "age", "state"),
    [
        ("lab-2", "this-machine", 5, WorkerState.RUNNING),  # another address
        ("lab-1", "other-machine", 5, WorkerState.RUNNING),  # the same machine
        ("lab-1", "this-machine", 400, WorkerState.RUNNING),  # stale (stalled_after 180 s)
        ("lab-1", "this-machine", 5, WorkerState.DEAD),  # ended
    ],
)
def test_the_same_machine_a_stale_or_ended_row_or_another_address_is_no_conflict(
    crucible, node, host, age, state
):
    _other_machine("lab-1", heartbeat_age=age, state=state)
    nodes.check_address(node, host)


def test_a_row_from_before_host_ids_is_no_conflict(crucible):
    row = _other_machine("lab-1", heartbeat_age=5)
    Worker.objects.filter(pk=row.pk).update(host_id="")
    nodes.check_address("lab-1", "this-machine")


def test_recent_is_judged_by_the_database_clock(crucible, monkeypatch):
    _other_machine("lab-1", heartbeat_age=5)
    # This host's clock a day ahead would call the heartbeat stale; the database's does not.
    ahead = timezone.now() + dt.timedelta(days=1)
    monkeypatch.setattr(timezone, "now", lambda: ahead)
    with pytest.raises(LaunchRefused):
        nodes.check_address("lab-1", "this-machine")


def test_a_refused_spawned_worker_has_its_row_failed_with_the_reason(crucible):
    _other_machine("lab-1", heartbeat_age=5)
    spawned = Worker.objects.create(node="lab-1", spawned=True, host_id="this-machine")
    with pytest.raises(LaunchRefused):
        nodes.check_address("lab-1", "this-machine", spawned.pk)
    spawned.refresh_from_db()
    assert spawned.state == WorkerState.FAILED
    assert "'lab-1'" in spawned.failure_reason
    assert "WORKER_NODE_ADDRESS" in spawned.failure_reason


def test_the_listening_worker_leaves_the_tick_only_while_another_takes_it() -> None:
    from workers.pool.monitor import TICK_LEFT_FOR, leaves_the_tick

    assert leaves_the_tick(True, 0.5, 2.0), "another worker ticked a moment ago"
    assert not leaves_the_tick(False, 0.5, 2.0), "alone on its machine"
    assert not leaves_the_tick(True, TICK_LEFT_FOR * 2.0, 2.0), "the others stopped ticking"
    assert not leaves_the_tick(True, float("inf"), 2.0), "nobody ever ticked"

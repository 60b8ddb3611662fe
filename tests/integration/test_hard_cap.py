"""WORKER_MAX_COUNT is a hard cap: force goes past the memory and core limits, never past it,
from the launcher, the CLI and concurrent requests alike (the API is in test_api/)."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from workers.exceptions import AdmissionRefused
from workers.models import Worker
from workers.pool import admission, launcher
from workers.states import WorkerState

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_processes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Reserved rows are what admission counts: record launches instead of starting processes."""
    launched: list[int] = []

    def launch(worker: Worker, token: str, queues: list[str]) -> Worker:
        launched.append(worker.pk)
        return worker

    monkeypatch.setattr(launcher, "_launch", launch)
    return launched


@pytest.fixture
def cap(settings: Any, crucible: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """WORKER_MAX_COUNT of 4 on a machine whose memory allows one worker."""
    monkeypatch.setattr(admission, "_physical_cores", lambda: 64)
    tiny = admission.MachineMemory(total=2**34, available=2**20, percent=99.0)
    monkeypatch.setattr(admission, "_virtual_memory", lambda: tiny)
    settings.CRUCIBLE = dataclasses.replace(
        settings.CRUCIBLE, max_count=4, memory_per_task_mb=1, memory_guard_mb=0
    )
    return settings.CRUCIBLE


def active(node: str) -> int:
    return Worker.objects.active().on_node(node).count()


@pytest.mark.parametrize("count", [5, 6, 32])
def test_force_never_starts_more_than_the_cap(cap, no_processes, count):
    with pytest.raises(AdmissionRefused, match="WORKER_MAX_COUNT allows 4 workers") as refused:
        launcher.add(count, force=True)

    assert not refused.value.forceable
    assert Worker.objects.count() == 0, "nothing reserved"
    assert no_processes == [], "nothing started"


def test_force_starts_beyond_memory_up_to_the_cap_and_no_further(cap, no_processes):
    with pytest.raises(AdmissionRefused, match="Memory allows 1 worker"):
        launcher.add(2)

    added = launcher.add(4, force=True)

    assert no_processes == [w.pk for w in added]
    assert active(cap.node_address) == 4
    with pytest.raises(AdmissionRefused, match=r"4 are active\. Force does not go past"):
        launcher.add(1, force=True)
    assert Worker.objects.count() == 4


def test_the_cli_refuses_force_beyond_the_cap_naming_it(cap, no_processes):
    with pytest.raises(CommandError) as refused:
        call_command("workers", "add", "--count", "6", "--force")

    message = str(refused.value)
    assert message == ("Cannot add 6: WORKER_MAX_COUNT allows 4 workers; none are active. "
                       "Force does not go past WORKER_MAX_COUNT. "
                       "4 would fit now: add --fit to start them.")
    assert Worker.objects.count() == 0
    assert no_processes == []


def test_the_cli_offers_force_only_where_it_helps(cap, no_processes):
    with pytest.raises(CommandError, match=r"Memory allows 1 worker.*Use --force to start anyway"):
        call_command("workers", "add", "--count", "2")

    call_command("workers", "add", "--count", "2", "--force")

    assert active(cap.node_address) == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_forced_adds_stop_at_the_cap(cap, no_processes):
    """Eight requests at once for one worker each: the cap holds between the check and the
    insert, because admission and the reservation are one locked transaction."""
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def add_one() -> None:
        start.wait()
        try:
            launcher.add(1, force=True)
            outcomes.append("added")
        except AdmissionRefused:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=add_one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(outcomes) == ["added"] * 4 + ["refused"] * 4
    assert Worker.objects.filter(state=WorkerState.STARTING).count() == 4

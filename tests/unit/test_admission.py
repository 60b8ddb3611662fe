from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from django.utils import timezone
from pytest_django import Settings

from workers import conf
from workers.conf import WorkerSettings
from workers.exceptions import AdmissionRefused
from workers.models import Node, PausedQueue, Task, Worker
from workers.pool import admission
from workers.pool.admission import (
    Admission,
    Machine,
    MachineMemory,
    NextTask,
    NodeLoad,
    admit,
    compute,
)
from workers.states import TaskState, WorkerState

MB = 1024 * 1024
GB = 1024 * MB
TOTAL = 128 * GB


def settings_(
    max_count: int = 64, memory_per_task_mb: int = 8192, memory_guard_mb: int = 2048
) -> WorkerSettings:
    return WorkerSettings(
        node_address="node-a",
        max_count=max_count,
        memory_per_task_mb=memory_per_task_mb,
        memory_guard_mb=memory_guard_mb,
    )


def machine(
    available: int, cores: int = 64, platform: str = "Linux", pressure: bool = False
) -> Machine:
    memory = MachineMemory(total=TOTAL, available=available, percent=50.0)
    return Machine(memory=memory, cores=cores, platform=platform, memory_pressure=pressure)


# --- compute: the pure arithmetic ---


def test_max_count_binding() -> None:
    result = compute(settings_(max_count=2), machine(100 * GB, cores=8), active=0)

    assert result == Admission(
        admissible=2,
        active=0,
        can_add=True,
        reason="WORKER_MAX_COUNT allows 2 workers; none are active.",
        limits={"max_count": 2, "cores": 8, "memory": 12},
        memory=MachineMemory(total=TOTAL, available=100 * GB, percent=50.0),
        budget_mb=100 * 1024 - 2048,
        need_mb=8192,
    )


def test_cores_binding() -> None:
    result = compute(settings_(max_count=16), machine(100 * GB, cores=4), active=1)

    assert result.admissible == 4
    assert result.limits == {"max_count": 16, "cores": 4, "memory": 12}
    assert result.reason == "Physical cores (4) allow 4 workers; 1 is active."
    assert result.can_add


def test_memory_binding_names_the_figures() -> None:
    available = 2 * GB + int(17.3 * GB)

    result = compute(settings_(max_count=16), machine(available, cores=16), active=0)

    assert result.admissible == 2
    assert result.limits["memory"] == 2
    assert result.reason == (
        "Memory allows 2 workers (needs 8.0 GB each; 17.3 GB budget after a 2.0 GB guard);"
        " none are active."
    )


def test_tie_names_the_setting_before_memory() -> None:
    result = compute(settings_(max_count=2), machine(2 * GB + 16 * GB), active=0)

    assert result.limits["memory"] == 2
    assert result.reason.startswith("WORKER_MAX_COUNT allows 2 workers")


def test_memory_below_guard_admits_nothing() -> None:
    result = compute(settings_(), machine(GB), active=0)

    assert result.admissible == 0
    assert result.limits["memory"] == 0
    assert not result.can_add
    assert result.reason == (
        "Memory allows 0 workers (needs 8.0 GB each; only 1.0 GB available, below a 2.0 GB"
        " guard); none are active."
    )


def test_memory_just_below_one_task_admits_nothing() -> None:
    result = compute(settings_(), machine(2 * GB + 8 * GB - 1), active=0)

    assert result.admissible == 0
    assert not result.can_add


def test_memory_exactly_one_task_admits_one() -> None:
    result = compute(settings_(), machine(2 * GB + 8 * GB), active=0)

    assert result.admissible == 1
    assert result.can_add


def test_below_guard_with_idle_workers_admits_none() -> None:
    result = compute(settings_(), machine(2 * GB - MB), active=3)

    assert result.limits["memory"] == 0
    assert result.admissible == 0
    assert not result.can_add


def test_memory_limit_never_negative() -> None:
    result = compute(settings_(), machine(0), active=0)

    assert result.limits["memory"] == 0
    assert result.admissible == 0


def queued(mb: int) -> NextTask:
    return NextTask(id=7, func_path="sims.run", memory_mb=mb, source="declared")


def test_largest_queued_estimate_replaces_the_setting() -> None:
    result = compute(settings_(), machine(2 * GB + 40 * GB), active=0, next_task=queued(16384))

    assert result.admissible == 2
    assert "needs 16.0 GB each, the largest queued task: task 7 (sims.run, declared)" in (
        result.reason)


def test_smaller_queued_estimate_also_replaces_the_setting() -> None:
    result = compute(settings_(), machine(2 * GB + 40 * GB), active=0, next_task=queued(4096))

    assert result.limits["memory"] == 10


def test_nothing_queued_falls_back_to_the_setting() -> None:
    result = compute(settings_(), machine(2 * GB + 40 * GB), active=0, next_task=None)

    assert result.limits["memory"] == 5
    assert "queued task" not in result.reason


def test_macos_pressure_halves_the_memory_limit() -> None:
    available = 2 * GB + 40 * GB
    calm = compute(settings_(), machine(available, platform="Darwin"), active=0)
    pressed = compute(settings_(), machine(available, platform="Darwin", pressure=True), active=0)

    assert calm.limits["memory"] == 5
    assert pressed.limits["memory"] == 2
    assert pressed.admissible == 2
    assert "halved under macOS memory pressure" in pressed.reason


def test_windows_adds_one_gb_to_the_guard() -> None:
    available = 2 * GB + 8 * GB
    linux = compute(settings_(), machine(available), active=0)
    windows = compute(settings_(), machine(available, platform="Windows"), active=0)

    assert linux.admissible == 1
    assert windows.admissible == 0
    assert not windows.can_add
    assert "3.0 GB guard (incl. 1.0 GB extra on Windows)" in windows.reason


@pytest.mark.parametrize("active", [1, 2, 3, 4])
def test_idle_workers_never_raise_the_memory_figure(active: int) -> None:
    # Machine memory unchanged as idle workers are added: the figure stays (it rose with
    # each worker before: 2, 3, 4, 5).
    result = compute(settings_(), machine(2 * GB + 16 * GB + GB // 2), active=active)

    assert result.limits["memory"] == 2
    assert result.can_add == (active < 2)


def test_busy_workers_count_with_what_their_tasks_committed() -> None:
    # 16 GB committed to two running tasks measured at 10 GB: available memory is what is
    # left once they use it, so the budget adds their measured use back.
    load = NodeLoad(busy=2, committed_mb=16384, tasks_rss=10 * GB)

    result = compute(settings_(), machine(2 * GB + 14 * GB), active=3, load=load)

    assert result.budget_mb == 24 * 1024
    assert result.free_mb == 8192
    assert result.limits["memory"] == 3, "the two busy ones, and one more 8 GB task"
    assert not result.can_add, "the idle third worker takes that task"
    assert "16.0 GB of it committed to 2 running tasks" in result.reason


def test_the_issue_case_one_large_queued_task_and_one_idle_worker_fits_one() -> None:
    result = compute(settings_(), machine(2 * GB + 21 * GB), active=1,
                     next_task=queued(11981))  # 11.7 GB

    assert result.limits["memory"] == 1
    assert not result.can_add
    assert result.reason.startswith("Memory allows 1 worker (needs 11.7 GB each, the largest "
                                    "queued task: task 7 (sims.run, declared)")


def test_the_setting_fixes_the_budget() -> None:
    fixed = replace(settings_(), node_memory_mb=20000)

    result = compute(fixed, machine(100 * GB), active=0)

    assert result.budget_mb == 20000
    assert result.limits["memory"] == 2
    assert "WORKER_NODE_MEMORY_MB budgets 19.5 GB" in result.reason


def test_the_memory_line_says_what_is_committed_measured_and_needed() -> None:
    load = NodeLoad(busy=1, committed_mb=8192, tasks_rss=3 * GB)

    result = compute(settings_(), machine(2 * GB + 14 * GB), active=1, load=load,
                     next_task=queued(4096))

    assert result.memory_line() == (
        "8.0 GB of 17.0 GB committed to 1 running task, 3.0 GB measured; next task needs "
        "4.0 GB (task 7 (sims.run, declared))")


@pytest.mark.parametrize("active", [2, 3])
def test_cannot_add_when_active_reaches_capacity(active: int) -> None:
    result = compute(settings_(max_count=2), machine(100 * GB), active=active)

    assert result.admissible == 2
    assert not result.can_add


def test_singular_wording() -> None:
    result = compute(settings_(max_count=1), machine(100 * GB), active=1)

    assert result.reason == "WORKER_MAX_COUNT allows 1 worker; 1 is active."


# --- admit: what force passes, and what it never does ---


def test_force_passes_the_memory_limit() -> None:
    room = compute(settings_(max_count=4), machine(2 * GB + 8 * GB), active=1)  # memory: 1

    with pytest.raises(AdmissionRefused) as refused:
        admit(room, 3, force=False)
    assert refused.value.forceable
    assert refused.value.reason == room.reason
    assert str(refused.value) == f"Cannot add 3: {room.reason}"
    admit(room, 3, force=True)  # 4 with the active one: the cap, not beyond


def test_force_passes_the_core_limit() -> None:
    room = compute(settings_(max_count=8), machine(100 * GB, cores=2), active=2)

    admit(room, 6, force=True)
    with pytest.raises(AdmissionRefused, match="Physical cores"):
        admit(room, 1, force=False)


@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize(("active", "count"), [(0, 5), (0, 32), (3, 2), (4, 1)])
def test_nothing_passes_worker_max_count(force: bool, active: int, count: int) -> None:
    room = compute(settings_(max_count=4, memory_per_task_mb=1), machine(100 * GB), active=active)

    with pytest.raises(AdmissionRefused) as refused:
        admit(room, count, force=force)

    assert not refused.value.forceable
    assert refused.value.reason.startswith("WORKER_MAX_COUNT allows 4 workers; ")
    assert str(refused.value).startswith(f"Cannot add {count}: WORKER_MAX_COUNT allows 4 workers")
    assert str(refused.value).endswith("Force does not go past WORKER_MAX_COUNT.")


def test_the_cap_is_named_even_when_memory_is_tighter() -> None:
    room = compute(settings_(max_count=4), machine(2 * GB + 8 * GB), active=0)  # memory: 1

    with pytest.raises(AdmissionRefused) as refused:
        admit(room, 6, force=False)

    assert refused.value.reason == "WORKER_MAX_COUNT allows 4 workers; none are active."
    assert not refused.value.forceable, "forcing would not help: say so, not 'memory'"


def test_up_to_the_cap_is_admitted() -> None:
    room = compute(settings_(max_count=4, memory_per_task_mb=1), machine(100 * GB), active=1)

    admit(room, 3, force=False)


# --- reading the machine at its boundary ---


@pytest.fixture
def fake_machine(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Substitute the boundary functions; tests change the returned values."""
    values: dict[str, object] = {
        "memory": MachineMemory(total=TOTAL, available=2 * GB + 24 * GB, percent=60.0),
        "physical": 8,
        "logical": 16,
        "platform": "Linux",
        "pressure": False,
    }
    monkeypatch.setattr(admission, "_virtual_memory", lambda: values["memory"])
    monkeypatch.setattr(admission, "_physical_cores", lambda: values["physical"])
    monkeypatch.setattr(admission, "_logical_cores", lambda: values["logical"])
    monkeypatch.setattr(admission, "_platform", lambda: values["platform"])
    monkeypatch.setattr(admission, "_macos_memory_pressure", lambda: values["pressure"])
    return values


def test_physical_cores_preferred(fake_machine: dict[str, object]) -> None:
    assert admission.read_machine().cores == 8


def test_logical_cores_when_physical_unknown(fake_machine: dict[str, object]) -> None:
    fake_machine["physical"] = None

    assert admission.read_machine().cores == 16


def test_pressure_read_only_on_macos(fake_machine: dict[str, object]) -> None:
    fake_machine["pressure"] = True

    assert admission.read_machine().memory_pressure is False
    fake_machine["platform"] = "Darwin"
    assert admission.read_machine().memory_pressure is True


def test_machine_memory_is_the_boundary_reading(fake_machine: dict[str, object]) -> None:
    assert admission.machine_memory() == fake_machine["memory"]


def test_pressure_probe_never_raises() -> None:
    assert isinstance(admission._macos_memory_pressure(), bool)


# --- check(): the database and the machine together ---


@pytest.fixture
def node_settings(settings: Settings) -> WorkerSettings:
    crucible = replace(
        conf.get(),
        node_address="node-a",
        max_count=64,
        memory_per_task_mb=8192,
        memory_guard_mb=2048,
    )
    settings.CRUCIBLE = crucible
    return crucible


def add_task(state: str, memory_mb: int | None, **fields: object) -> Task:
    return Task.objects.create(func_path="m.f", timeout=60.0, memory_mb=memory_mb, state=state,
                               memory_estimate_mb=memory_mb or 0, **fields)


@pytest.mark.django_db
@pytest.mark.usefixtures("node_settings")
def test_check_counts_active_workers_on_this_node(fake_machine: dict[str, object]) -> None:
    for state in WorkerState.values:
        Worker.objects.create(node="node-a", state=state)
    Worker.objects.create(node="node-b", state=WorkerState.RUNNING)

    result = admission.check()

    assert result.active == 3  # STARTING, RUNNING, DRAINING
    assert result.limits == {"max_count": 64, "cores": 8, "memory": 3}
    assert result.admissible == 3
    assert not result.can_add, "three idle workers take the three 8 GB tasks that fit"
    assert result.memory == fake_machine["memory"]


@pytest.mark.django_db
@pytest.mark.usefixtures("node_settings")
def test_check_for_another_node(fake_machine: dict[str, object]) -> None:
    Worker.objects.create(node="node-a", state=WorkerState.RUNNING)
    Worker.objects.create(node="node-b", state=WorkerState.DRAINING)
    Worker.objects.create(node="node-b", state=WorkerState.STARTING)

    assert admission.check("node-b").active == 2


@pytest.mark.django_db
@pytest.mark.usefixtures("node_settings")
def test_check_uses_largest_queued_estimate(fake_machine: dict[str, object]) -> None:
    add_task(TaskState.QUEUED, 4096)
    largest = add_task(TaskState.QUEUED, 12288)
    add_task(TaskState.QUEUED, None)
    add_task(TaskState.RUNNING, 65536)
    add_task(TaskState.WAITING, 65536)

    result = admission.check()

    assert result.limits["memory"] == 2  # 24 GB / 12 GB
    assert f"needs 12.0 GB each, the largest queued task: task {largest.pk} (m.f, " in (
        result.reason)


@pytest.mark.django_db
@pytest.mark.usefixtures("node_settings")
def test_check_uses_the_setting_without_queued_estimates(fake_machine: dict[str, object]) -> None:
    add_task(TaskState.QUEUED, None)
    add_task(TaskState.RUNNING, 65536)

    result = admission.check()

    assert result.limits["memory"] == 3  # 24 GB / 8 GB
    assert "needs 8.0 GB each" in result.reason
    assert "queued task" not in result.reason


@pytest.mark.django_db
@pytest.mark.usefixtures("node_settings")
def test_check_full_node_cannot_add(fake_machine: dict[str, object]) -> None:
    fake_machine["memory"] = MachineMemory(total=TOTAL, available=GB, percent=98.0)
    Worker.objects.create(node="node-a", state=WorkerState.RUNNING)

    result = admission.check()

    assert result.admissible == 0
    assert result.active == 1
    assert not result.can_add
    assert result.reason.startswith("Memory allows 0 workers")


@pytest.mark.django_db
def test_check_on_the_real_machine() -> None:
    result = admission.check()

    assert set(result.limits) == {"max_count", "cores", "memory"}
    assert result.admissible == min(result.limits.values())
    assert result.limits["cores"] >= 1
    assert result.memory.total >= result.memory.available > 0
    assert 0.0 <= result.memory.percent <= 100.0
    assert result.active == 0


@pytest.mark.parametrize(
    ("max_count", "available", "cores", "binding"),
    [(2, 100 * GB, 8, "max_count"), (16, 100 * GB, 4, "cores"), (16, 20 * GB, 8, "memory")],
)
def test_the_answer_names_the_limit_that_binds(
    max_count: int, available: int, cores: int, binding: str
) -> None:
    result = compute(settings_(max_count=max_count), machine(available, cores=cores), active=0)

    assert result.binding == binding
    assert min(result.limits, key=result.limits.__getitem__) == binding


@pytest.mark.django_db
@pytest.mark.usefixtures("node_settings")
def test_check_ignores_tasks_not_due_and_in_paused_queues(fake_machine: dict[str, object]) -> None:
    add_task(TaskState.QUEUED, 65536, run_after=timezone.now() + timedelta(days=1500))
    add_task(TaskState.QUEUED, 32768, queue="held")
    PausedQueue.objects.create(name="held")
    due = add_task(TaskState.QUEUED, 4096, run_after=timezone.now() - timedelta(seconds=1))

    result = admission.check()

    assert result.next_task is not None and result.next_task.id == due.pk
    assert result.limits["memory"] == 6  # 24 GB / 4 GB


@pytest.mark.django_db
@pytest.mark.usefixtures("node_settings")
def test_check_counts_memory_committed_to_running_tasks(fake_machine: dict[str, object]) -> None:
    busy = Worker.objects.create(node="node-a", state=WorkerState.RUNNING, task_rss_bytes=GB)
    Worker.objects.create(node="node-a", state=WorkerState.RUNNING)
    elsewhere = Worker.objects.create(node="node-b", state=WorkerState.RUNNING)
    add_task(TaskState.RUNNING, 16384, worker=busy)
    add_task(TaskState.RUNNING, 16384, worker=elsewhere)

    result = admission.check()

    assert result.load == NodeLoad(busy=1, committed_mb=16384, tasks_rss=GB)
    assert result.budget_mb == 25 * 1024, "24 GB above the guard, plus the task's 1 GB in use"
    assert result.limits["memory"] == 2, "the busy worker, and one more 8 GB task"
    assert not result.can_add, "the idle worker takes that one"


@pytest.mark.django_db
@pytest.mark.usefixtures("node_settings")
@pytest.mark.parametrize(("running_mb", "reason"), [
    (9114, "task {big} waits: needs 8.0 GB, 3.1 GB free on lab-node-1"),
    (1024, ""),  # everything fits
])
def test_the_reason_a_queued_task_waits_names_the_node(
    fake_machine: dict[str, object], running_mb: int, reason: str
) -> None:
    Worker.objects.create(node="lab-node-1", state=WorkerState.RUNNING)
    node = Node.objects.create(name="lab-node-1", memory_mb=12288, cpus=8)
    add_task(TaskState.RUNNING, running_mb, node=node)
    add_task(TaskState.QUEUED, 1024)
    big = add_task(TaskState.QUEUED, 8192)

    assert admission.check().waiting == reason.format(big=big.pk)

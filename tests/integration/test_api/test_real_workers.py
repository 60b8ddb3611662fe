"""Real worker processes started and stopped through the API, as a script would."""

from __future__ import annotations

from functools import partial

import pytest
from django.contrib.admin.models import LogEntry

from tests.conftest import wait_for
from workers.models import Worker
from workers.pool import admission
from workers.states import WorkerState

from .conftest import NO_STATIC_ROOT, Api, alive, stop_processes, token_api

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration, NO_STATIC_ROOT]


def state_of(api: Api, worker_id: int) -> str | None:
    workers = api.get("/api/workers/status/").json()["workers"]
    return next((w["state"] for w in workers if w["worker_id"] == worker_id), None)


def is_dead(api: Api, worker_id: int) -> bool:
    return state_of(api, worker_id) == WorkerState.DEAD


def test_add_a_worker_see_it_run_refuse_one_more_force_it_and_abort_both(
    capacity, spawning, monkeypatch
):
    capacity(2)
    memory = {"available": 3 * 2**19}  # room for one worker of 1 MB, then none
    monkeypatch.setattr(admission, "_virtual_memory", lambda: admission.MachineMemory(
        total=2**34, available=memory["available"], percent=99.0))
    api = token_api("workers.manage_workers", "workers.view_worker")
    try:
        first = api.post("/api/workers/add/")
        assert first.status_code == 201
        first_id = first.json()["worker_id"]
        assert first.json()["state"] == WorkerState.STARTING
        assert [w["worker_id"] for w in first.json()["workers"]] == [first_id]
        wait_for(lambda: state_of(api, first_id) == WorkerState.RUNNING, timeout=15)

        memory["available"] = 2**19  # what the running worker took
        refused = api.post("/api/workers/add/")
        assert refused.status_code == 409
        # the idle worker would take the next task, and no task fits in what is left
        assert refused.json()["detail"]["reason"].startswith("Memory allows 0 workers")
        assert refused.json()["detail"]["forceable"] is True

        forced = api.post("/api/workers/add/?force=true")
        assert forced.status_code == 201
        second_id = forced.json()["worker_id"]
        wait_for(lambda: state_of(api, second_id) == WorkerState.RUNNING, timeout=15)

        capped = api.post("/api/workers/add/?force=true")
        assert capped.status_code == 409
        assert capped.json()["detail"]["reason"] == (
            "WORKER_MAX_COUNT allows 2 workers; 2 are active."
        )
        assert capped.json()["detail"]["forceable"] is False
        assert Worker.objects.count() == 2, "force never passes WORKER_MAX_COUNT"

        pids = [Worker.objects.get(pk=pk).pid or 0 for pk in (first_id, second_id)]
        for worker_id in (first_id, second_id):
            aborted = api.post(f"/api/workers/{worker_id}/abort/")
            assert aborted.status_code == 200
            assert aborted.json()["worker_id"] == worker_id  # woken at once: may be DEAD already
        for worker_id in (first_id, second_id):
            wait_for(partial(is_dead, api, worker_id), timeout=10)
        wait_for(lambda: not any(alive(pid) for pid in pids), timeout=5)

        assert api.post(f"/api/workers/{first_id}/abort/").status_code == 409
        assert list(LogEntry.objects.order_by("id").values_list("change_message", flat=True)) == [
            f"add worker {first_id}",
            f"add worker {second_id} (forced)",
            f"abort worker {first_id}",
            f"abort worker {second_id}",
        ]
    finally:
        stop_processes(Worker.objects.values_list("pid", flat=True))

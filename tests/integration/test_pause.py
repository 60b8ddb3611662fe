"""Pausing a queue: its tasks stay QUEUED and are not claimed until it is resumed.

The claim itself leaves paused queues out, so the tests drive the claim (both its SQL
forms: one queue, several queues; and the success-then-claim path) and real workers.
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from tests.conftest import wait_for
from workers import queue
from workers.exceptions import InvalidQueueName
from workers.models import PausedQueue, Task, Worker
from workers.queue import pausing
from workers.states import Outcome, TaskState, WorkerState
from workers.web import status

from .helpers import enqueue, task

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker(crucible):
    return Worker.objects.create(node="elsewhere", state=WorkerState.RUNNING)


def test_a_paused_queue_is_not_claimed_until_resumed(worker):
    waiting = enqueue("add", 1, 2)
    assert pausing.pause("default", by="ops") is True
    assert pausing.pause("default") is False, "pausing twice changes nothing"

    assert queue.claim_next(worker.pk, ["default"]) is None
    assert task(waiting.pk).state == TaskState.QUEUED
    assert not queue.has_queued(["default"]), "a batch worker has nothing left to claim"

    assert pausing.resume("default") is True
    claimed = queue.claim_next(worker.pk, ["default"])
    assert claimed is not None and claimed.id == waiting.pk
    assert pausing.resume("default") is False


def test_a_worker_of_several_queues_claims_only_the_open_ones(worker):
    paused = enqueue("add", 1, 2, queue="urgent", priority=10)
    open_ = enqueue("add", 3, 4, queue="default", priority=-5)
    pausing.pause("urgent")

    claimed = queue.claim_next(worker.pk, ["urgent", "default"])

    assert claimed is not None and claimed.id == open_.pk, "the lower priority, open queue"
    assert queue.claim_next(worker.pk, ["urgent", "default"]) is None
    assert task(paused.pk).state == TaskState.QUEUED


def test_the_next_claim_after_a_success_skips_a_paused_queue(worker):
    first = enqueue("add", 1, 2)
    second = enqueue("add", 3, 4)
    running = queue.claim_next(worker.pk, ["default"])
    assert running is not None and running.id == first.pk
    pausing.pause("default")

    following = queue.succeed_and_claim(running, 3, queue.Ending(Outcome.SUCCEEDED),
                                        ["default"])

    assert following is None
    assert task(first.pk).state == TaskState.SUCCEEDED, "the running task still finishes"
    assert task(second.pk).state == TaskState.QUEUED


def test_the_pause_is_a_row_that_says_who_and_when(crucible):
    before = timezone.now()
    pausing.pause("nightly", by="alice")
    row = PausedQueue.objects.get()
    assert (row.name, row.paused_by) == ("nightly", "alice")
    assert row.paused_at >= before - timedelta(seconds=5)
    assert set(pausing.paused()) == {"nightly"}
    assert pausing.is_paused("nightly") and not pausing.is_paused("default")


@pytest.mark.parametrize("name", ["", "x" * 101, "a\x00b"])
def test_a_name_no_queue_could_have_is_refused_and_nothing_written(crucible, name):
    with pytest.raises(InvalidQueueName, match="1 to 100 characters"):
        pausing.pause(name)
    with pytest.raises(InvalidQueueName):
        pausing.resume(name)
    assert not PausedQueue.objects.exists()


def test_a_running_worker_leaves_a_paused_queue_alone_until_it_is_resumed(workers):
    pausing.pause("default")
    held = enqueue("record", "held")
    workers.start("--queue", "default", "--queue", "other")
    wait_for(lambda: Worker.objects.filter(state=WorkerState.RUNNING).exists(), timeout=30)
    passed = enqueue("record", "passed", queue="other")

    wait_for(lambda: task(passed.pk).state == TaskState.SUCCEEDED, timeout=30)
    assert task(held.pk).state == TaskState.QUEUED, "claimed after a later task: not at all"

    pausing.resume("default")
    wait_for(lambda: task(held.pk).state == TaskState.SUCCEEDED, timeout=30)


def beat(worker: Worker) -> datetime:
    last = Worker.objects.get(pk=worker.pk).last_heartbeat
    assert last is not None
    return last


def test_the_pause_holds_for_a_worker_started_after_it(workers):
    pausing.pause("default")
    held = enqueue("record", "held")
    workers.start()
    worker = wait_for(lambda: Worker.objects.filter(state=WorkerState.RUNNING).first(),
                      timeout=30)
    seen = worker.last_heartbeat
    assert seen is not None
    # Two heartbeats later it has looked for work at least once (it polls every 0.5 s).
    wait_for(lambda: beat(worker) > seen, timeout=30)
    seen = Worker.objects.get(pk=worker.pk).last_heartbeat
    assert seen is not None
    wait_for(lambda: beat(worker) > seen, timeout=30)
    assert task(held.pk).state == TaskState.QUEUED
    assert Task.objects.filter(state=TaskState.RUNNING).count() == 0

    pausing.resume("default")
    wait_for(lambda: task(held.pk).state == TaskState.SUCCEEDED, timeout=30)


# -- the command line ----------------------------------------------------------------------


def workers_command(*args: str) -> str:
    out = io.StringIO()
    call_command("workers", *args, stdout=out)
    return out.getvalue()


def test_the_command_line_pauses_lists_and_resumes_a_queue(crucible):
    enqueue("add", 1, 2, queue="nightly")
    enqueue("add", 1, 2, queue="nightly", run_after=timezone.now() + timedelta(hours=1))
    enqueue("add", 1, 2)

    assert workers_command("queue", "pause", "nightly") == "paused queue nightly\n"
    assert "was paused" in workers_command("queue", "pause", "nightly")
    assert pausing.is_paused("nightly")

    lines = workers_command("queue", "list").splitlines()
    assert lines[0].split() == ["QUEUE", "STATE", "QUEUED", "SCHEDULED", "RUNNING"]
    assert lines[1].split() == ["default", "open", "1", "0", "0"]
    assert lines[2].split() == ["nightly", "paused", "1", "1", "0"]
    assert lines[3].strip().startswith("paused since ") and "(command line)" in lines[3]

    assert workers_command("queue", "resume", "nightly") == "resumed queue nightly\n"
    assert not pausing.is_paused("nightly")
    assert "was not paused" in workers_command("queue", "resume", "nightly")


def test_the_command_line_names_a_bad_queue_name(crucible):
    with pytest.raises(CommandError, match="a queue name has 1 to 100 characters"):
        workers_command("queue", "pause", "x" * 101)
    assert not PausedQueue.objects.exists()


def test_the_status_lists_a_paused_queue_even_when_it_is_empty(crucible):
    enqueue("add", 1, 2)
    pausing.pause("nightly")

    snap = status.snapshot()
    document = status.to_json(snap)

    assert snap.queues["nightly"] == {"waiting": 0, "queued": 0, "running": 0,
                                      "failed_last_hour": 0}
    assert document["queue"]["nightly"]["paused"] is True
    assert document["queue"]["default"] == {"waiting": 0, "queued": 1, "running": 0,
                                            "failed_last_hour": 0, "paused": False}


def test_the_queue_page_says_it_is_paused_by_whom(crucible, admin_client):
    enqueue("add", 1, 2, queue="sims")
    url = reverse("admin:workers_task_queue", args=["sims"])
    assert "cr-queue-paused" not in admin_client.get(url).content.decode()

    pausing.pause("sims", by="alice")

    html = admin_client.get(url).content.decode()
    assert 'id="cr-queue-paused"' in html and "by alice" in html


def test_a_queue_live_workers_serve_can_be_paused_before_it_has_work(crucible, admin_client):
    Worker.objects.create(node="n", state=WorkerState.RUNNING, queues=["default", "gpu"])
    Worker.objects.create(node="n", state=WorkerState.DEAD, queues=["retired"])

    snap = status.snapshot()
    html = admin_client.get("/htmx/workers/status/", HTTP_HX_REQUEST="true").content.decode()

    assert set(snap.queues) == {"default", "gpu"}, "a dead worker's queue is not listed"
    assert snap.queues["gpu"] == {"waiting": 0, "queued": 0, "running": 0,
                                  "failed_last_hour": 0}
    assert html.count('data-cr-action="pause"') == 2


def test_a_queued_task_of_a_paused_queue_reads_paused_in_the_list_and_on_its_page(
    crucible, admin_client
):
    held, free = enqueue("add", 1, 2, queue="sims"), enqueue("add", 1, 2)
    pausing.pause("sims")
    listing = reverse("admin:workers_task_changelist")

    html = admin_client.get(listing).content.decode()
    page = admin_client.get(reverse("admin:workers_task_change", args=[held.pk])).content
    assert html.count("cr-badge--paused") == 1 and "queue sims is paused" in html
    assert html.count("cr-badge--queued") == 1, f"task {free.pk}'s queue is open"
    assert "cr-badge--paused" in page.decode()

    pausing.resume("sims")
    assert "cr-badge--paused" not in admin_client.get(listing).content.decode()


def test_enqueue_on_a_paused_queue_says_the_task_waits_for_the_resume(crucible):
    pausing.pause("sims")
    out, err = io.StringIO(), io.StringIO()

    call_command("enqueue", "tests.testapp.tasks.add", "--args", "[1, 2]", "--queue", "sims",
                 stdout=out, stderr=err)

    pk = int(out.getvalue())
    assert task(pk).state == TaskState.QUEUED
    assert err.getvalue().strip() == (f"Queue sims is paused: task {pk} waits until "
                                      "`manage.py workers queue resume sims`.")

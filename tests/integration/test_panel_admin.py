"""The task and worker admin: filters, search, actions through the services, the audit log."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from workers.models import Task, TaskAttempt, Worker
from workers.states import Outcome, TaskState, WorkerState

pytestmark = pytest.mark.django_db

TASKS = "/admin/workers/task/"
WORKERS = "/admin/workers/worker/"
NOOP = "tests.testapp.tasks.noop"


def user_with(*codenames: str) -> User:
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    perms = Permission.objects.filter(content_type__app_label="workers", codename__in=codenames)
    user.user_permissions.set(perms)
    return user


def make_task(state: str = TaskState.QUEUED, **fields: Any) -> Task:
    fields.setdefault("func_path", NOOP)
    return Task.objects.create(state=state, timeout=60, **fields)


def run_action(client: Client, action: str, *tasks: Task) -> Any:
    return client.post(
        TASKS, {"action": action, "_selected_action": [t.pk for t in tasks]}, follow=True
    )


def logged(action: str) -> list[str]:
    return [e.change_message for e in LogEntry.objects.all() if e.change_message.startswith(action)]


@pytest.fixture
def worker() -> Worker:
    return Worker.objects.create(state=WorkerState.RUNNING, node="node-b")


def test_the_task_list_filters_by_state_queue_priority_and_worker(admin_client, worker):
    make_task(queue="gpu", priority=5, worker=worker, state=TaskState.RUNNING)
    make_task(queue="default")
    html = admin_client.get(TASKS).content.decode()
    filters = ("state__exact=RUNNING", "queue=gpu", "priority=5", f"worker__id__exact={worker.pk}")
    for query in filters:
        assert query in html, query
    response = admin_client.get(TASKS, {"queue": "gpu"})
    assert response.context["cl"].result_count == 1


def test_the_task_list_searches_by_func_path_and_id(admin_client):
    wanted = make_task(func_path="tests.testapp.tasks.record")
    make_task()
    assert list(admin_client.get(TASKS, {"q": "record"}).context["cl"].result_list) == [wanted]
    assert list(admin_client.get(TASKS, {"q": str(wanted.pk)}).context["cl"].result_list) == [
        wanted
    ]
    assert admin_client.get(TASKS, {"q": "not-a-number"}).status_code == 200


def test_retry_gives_finished_tasks_a_fresh_budget_and_is_logged(admin_client):
    failed = make_task(TaskState.FAILED, attempt=3, finished_at=timezone.now(), error="boom")
    queued = make_task()
    page = run_action(admin_client, "retry_tasks", failed, queued)
    failed.refresh_from_db()
    assert failed.state == TaskState.QUEUED and failed.attempt_base == 3 and failed.error == ""
    assert "Retrying 1 task(s)." in page.content.decode()
    assert "1 not finished, left alone." in page.content.decode()
    assert logged("retry") == [f"retry task {failed.pk}"]


def test_cancel_stops_queued_tasks_and_asks_running_ones(admin_client, worker):
    queued = make_task()
    running = make_task(TaskState.RUNNING, worker=worker, attempt=1)
    run_action(admin_client, "cancel_tasks", queued, running)
    queued.refresh_from_db()
    running.refresh_from_db()
    assert queued.state == TaskState.CANCELLED
    assert running.state == TaskState.RUNNING and running.cancel_requested_at is not None
    assert sorted(logged("cancel")) == sorted(
        [f"cancel task {queued.pk}", f"cancel task {running.pk}"]
    )


def test_duplicate_enqueues_a_copy_through_the_queue(admin_client):
    original = make_task(
        TaskState.SUCCEEDED,
        func_path="tests.testapp.tasks.add",
        args=[1, 2],
        kwargs={},
        queue="gpu",
        priority=7,
        max_attempts=5,
        memory_mb=512,
        finished_at=timezone.now(),
    )
    run_action(admin_client, "duplicate_tasks", original)
    copy = Task.objects.exclude(pk=original.pk).get()
    assert (
        copy.state,
        copy.func_path,
        copy.args,
        copy.queue,
        copy.priority,
        copy.max_attempts,
        copy.memory_mb,
    ) == (TaskState.QUEUED, original.func_path, [1, 2], "gpu", 7, 5, 512)
    assert logged("duplicate") == [f"duplicate task {original.pk}: enqueued as task {copy.pk}"]


def test_duplicate_of_a_task_whose_function_is_gone_is_refused_with_a_message(admin_client):
    stale = make_task(TaskState.FAILED, func_path="tests.testapp.tasks.gone")
    page = run_action(admin_client, "duplicate_tasks", stale)
    assert Task.objects.count() == 1
    assert "cannot import" in page.content.decode()
    assert logged("duplicate") == []


@pytest.mark.parametrize(
    ("codename", "action"),
    [
        ("retry_task", "retry_tasks"),
        ("cancel_task", "cancel_tasks"),
        ("submit_task", "duplicate_tasks"),
    ],
)
def test_each_action_needs_its_permission(client, codename, action):
    client.force_login(user_with("view_task"))
    html = client.get(TASKS).content.decode()
    assert f'value="{action}"' not in html
    task = make_task(TaskState.FAILED)
    run_action(client, action, task)
    assert Task.objects.count() == 1 and logged(action.removesuffix("_tasks")) == []

    client.force_login(user_with_more(codename))
    assert f'value="{action}"' in client.get(TASKS).content.decode()


def user_with_more(codename: str) -> User:
    user = User.objects.get(username="operator")
    user.user_permissions.add(Permission.objects.get(codename=codename))
    return User.objects.get(pk=user.pk)  # a fresh object: permissions are cached


def test_the_task_page_shows_every_attempt_progress_and_log_tail(admin_client, worker):
    task = make_task(
        TaskState.RUNNING,
        worker=worker,
        attempt=2,
        progress=0.4,
        progress_message="step 4 of 10",
        started_at=timezone.now(),
    )
    start = timezone.now() - timedelta(minutes=3)
    TaskAttempt.objects.create(
        task=task,
        number=1,
        worker=worker,
        worker_label=f"worker {worker.pk}",
        started_at=start,
        finished_at=start + timedelta(seconds=65),
        outcome=Outcome.CRASHED,
        error="Process crashed: SIGKILL",
        peak_rss_bytes=3 * 2**30,
        log_tail="allocating grid",
    )
    html = admin_client.get(f"{TASKS}{task.pk}/change/").content.decode()
    assert "Process crashed" in html and "1 min 05 s" in html and "3.0\xa0GB" in html
    assert f'href="/admin/workers/worker/{worker.pk}/change/"' in html
    assert 'style="width: 40%"' in html and "step 4 of 10" in html
    assert "2/3" in html
    assert 'value="retry_tasks"' in html, "actions on the task page too"

    Task.objects.filter(pk=task.pk).update(state=TaskState.FAILED, finished_at=timezone.now())
    html = admin_client.get(f"{TASKS}{task.pk}/change/").content.decode()
    assert "allocating grid" in html, "the last attempt's log tail"


def test_the_change_form_action_retries_one_task(admin_client):
    task = make_task(TaskState.CANCELLED, finished_at=timezone.now())
    admin_client.post(
        f"{TASKS}{task.pk}/change/",
        {
            "CHANGE_FORM-action": "retry_tasks",
            "_selected_action": [task.pk],
        },
    )
    task.refresh_from_db()
    assert task.state == TaskState.QUEUED


def test_tasks_and_workers_cannot_be_added_changed_or_deleted_through_forms(admin_client, worker):
    task = make_task()
    for base, pk in ((TASKS, task.pk), (WORKERS, worker.pk)):
        assert admin_client.get(f"{base}add/").status_code == 403
        assert admin_client.post(f"{base}{pk}/change/", {"state": "DEAD"}).status_code == 403
        assert admin_client.post(f"{base}{pk}/delete/", {"post": "yes"}).status_code == 403
    worker.refresh_from_db()
    assert worker.state == WorkerState.RUNNING
    assert Task.objects.filter(pk=task.pk).exists()


def test_the_worker_list_shows_its_running_task_and_drains_through_the_launcher(
    admin_client, worker
):
    task = make_task(TaskState.RUNNING, worker=worker, attempt=1)
    html = admin_client.get(WORKERS).content.decode()
    assert f'href="/admin/workers/task/{task.pk}/change/">task {task.pk}</a>' in html
    assert 'class="cr-badge cr-badge--running"' in html
    admin_client.post(WORKERS, {"action": "drain_workers", "_selected_action": [worker.pk]})
    worker.refresh_from_db()
    assert worker.drain_requested_at is not None
    assert logged("drain") == [f"drain worker {worker.pk}"]


def test_worker_actions_need_manage_workers(client, worker):
    client.force_login(user_with("view_worker"))
    html = client.get(WORKERS).content.decode()
    assert 'value="abort_workers"' not in html
    client.post(WORKERS, {"action": "abort_workers", "_selected_action": [worker.pk]})
    worker.refresh_from_db()
    assert worker.abort_requested_at is None


def test_an_action_that_did_nothing_is_a_warning_not_a_success(admin_client, worker):
    done = make_task(TaskState.SUCCEEDED)
    page = run_action(admin_client, "cancel_tasks", done)
    shown = [(m.level_tag, m.message) for m in page.context["messages"]]
    assert ("warning", "No task was cancelled.") in shown
    assert not any(level == "success" for level, _ in shown), shown
    assert not any("Cancelled 0" in text for _, text in shown)

    gone = Worker.objects.create(state=WorkerState.DEAD, node="node-b")
    page = admin_client.post(
        WORKERS, {"action": "drain_workers", "_selected_action": [gone.pk]}, follow=True
    )
    shown = [(m.level_tag, m.message) for m in page.context["messages"]]
    assert shown == [("warning", "No worker was drained: none of those selected is active.")]

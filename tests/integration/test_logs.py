"""Per-attempt logs with real worker processes: captured apart, tails cut at lines, pages
that follow them, downloads, and what the worker page says about its log and its end."""

from __future__ import annotations

import dataclasses
import re
import signal
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.utils import timezone

from tests.conftest import wait_for
from workers import queue
from workers.models import Task, TaskAttempt, Worker
from workers.pool import launcher, monitor
from workers.queue import retention
from workers.runtime import logs as files
from workers.spec import TaskSpec
from workers.states import Outcome, TaskState, WorkerState
from workers.web import logs

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

LOG_TASKS = "tests.testapp.log_tasks"
TASKS = "/admin/workers/task/"
WORKERS = "/admin/workers/worker/"


def enqueue(name: str, *args: Any, **fields: Any) -> Task:
    return queue.enqueue(TaskSpec(func_path=f"{LOG_TASKS}.{name}", args=list(args), **fields))


def attempt_file(crucible: Any, task: Task, number: int = 1) -> Path:
    return files.attempt_log_path(crucible.log_dir, task.pk, number)


def attempt(task: Task, number: int = 1) -> TaskAttempt:
    return TaskAttempt.objects.get(task=task, number=number)


@pytest.fixture
def admin(django_user_model: Any) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_superuser("root", "r@localhost", "pw"))
    return client


def body(response: Any) -> bytes:
    return b"".join(response.streaming_content)


def run_batch(workers: Any) -> None:
    workers.start("--batch")
    assert workers.wait_all(timeout=90) == [0]


def test_each_attempt_logs_only_its_own_lines(workers, crucible):
    first = enqueue("print_lines", "alpha", 3, priority=5)
    second = enqueue("print_then_fail", "beta", 2, max_attempts=1)
    run_batch(workers)

    assert attempt_file(crucible, first).read_text() == "".join(
        f"alpha line {n}\n" for n in range(3)
    )
    beta = attempt_file(crucible, second).read_text()
    assert beta.startswith("beta line 0\nbeta line 1\n[crucible] attempt ended ERROR: ")
    assert "ValueError: beta failed on purpose" in beta and "alpha" not in beta
    assert attempt(first).log_tail == "alpha line 0\nalpha line 1\nalpha line 2\n"
    assert attempt(second).log_tail == "beta line 0\nbeta line 1\n"


def test_the_readmes_chatter_task_logs_its_lines_and_reports_progress(workers, crucible):
    job = queue.enqueue(TaskSpec(func_path="bench.tasks.chatter", kwargs={"seconds": 0.2,
                                                                        "every": 0.05}))
    run_batch(workers)

    done = Task.objects.get(pk=job.pk)
    assert (done.state, done.result, done.progress_message) == (
        TaskState.SUCCEEDED, 4, "line 4 of 4")
    assert attempt_file(crucible, job).read_text() == "".join(
        f"line {n} of 4\n" for n in range(1, 5))


def test_a_silent_failure_keeps_no_other_tasks_lines(workers):
    enqueue("print_lines", "alpha", 3, priority=5)
    silent = enqueue("fail_silently", max_attempts=1)
    run_batch(workers)

    failed = attempt(silent)
    assert failed.outcome == Outcome.ERROR
    assert failed.log_tail == "", "the worker's log (alpha's lines) is not this attempt's"


def test_a_long_log_tail_starts_at_the_start_of_a_line(workers):
    job = enqueue("print_then_fail", "gamma", 60, 8, max_attempts=1)  # ~3,000 characters
    run_batch(workers)

    tail = attempt(job).log_tail
    assert 0 < len(tail) <= queue.TAIL_CHARS
    assert re.fullmatch(r"(gamma line \d+( word){8}\n)+", tail), tail[:80]
    assert tail.endswith("gamma line 59" + " word" * 8 + "\n")


def test_the_task_page_shows_the_attempt_log_and_downloads_it(workers, crucible, admin):
    first = enqueue("print_lines", "alpha", 3, priority=5)
    job = enqueue("print_lines", "beta", 2)
    run_batch(workers)

    html = admin.get(f"{TASKS}{job.pk}/change/").content.decode()
    assert "beta line 0\nbeta line 1\n" in html and "alpha line" not in html
    assert 'id="cr-log-poll" hidden>' in html, "a finished attempt is not polled"
    download = f"{TASKS}{job.pk}/log/1/download/"
    assert f'href="{download}"' in html

    response = admin.get(download)
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="task-{job.pk}-attempt-1.log"'
    assert body(response) == b"beta line 0\nbeta line 1\n"
    assert b"alpha" not in body(admin.get(download))
    assert first.pk != job.pk


def test_a_missing_log_is_a_404_page(crucible, admin):
    job = Task.objects.create(func_path=f"{LOG_TASKS}.print_lines", timeout=60, attempt=1,
                              state=TaskState.SUCCEEDED)
    for url in (f"{TASKS}{job.pk}/log/1/download/", f"{TASKS}{job.pk}/log/2/download/",
                f"{TASKS}999999/log/1/download/", f"{WORKERS}999999/log/download/"):
        response = admin.get(url)
        assert response.status_code == 404, url
        assert response["Content-Type"].startswith("text/html")
        assert 'class="errornote"' in response.content.decode(), url


def test_logs_need_the_view_permission(crucible, django_user_model):
    job = Task.objects.create(func_path=f"{LOG_TASKS}.print_lines", timeout=60, attempt=1,
                              state=TaskState.RUNNING)
    path = attempt_file(crucible, job)
    path.parent.mkdir(parents=True)
    path.write_text("secret line\n")
    staff = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    client = Client()
    client.force_login(staff)
    download = f"{TASKS}{job.pk}/log/1/download/"
    poll = f"{TASKS}{job.pk}/log/?attempt=1&offset=0"
    assert client.get(download).status_code == 403
    assert client.get(poll, headers={"HX-Request": "true"}).status_code == 403
    assert Client().get(poll, headers={"HX-Request": "true"}).status_code == 403
    assert Client().get(download).status_code == 302, "a browser is sent to log in"

    staff.user_permissions.add(Permission.objects.get(codename="view_task"))
    client.force_login(User.objects.get(pk=staff.pk))
    assert body(client.get(download)) == b"secret line\n"


def test_the_poll_sends_what_came_after_its_offset_and_stops_at_the_end(crucible, admin):
    job = Task.objects.create(func_path=f"{LOG_TASKS}.print_lines", timeout=60, attempt=1,
                              state=TaskState.RUNNING)
    path = attempt_file(crucible, job)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"one\ntwo\nthr")
    page = admin.get(f"{TASKS}{job.pk}/change/").content.decode()
    assert "one\ntwo\n</pre>" in page, "a line still being written waits"
    assert f'hx-get="{TASKS}{job.pk}/log/?attempt=1&amp;offset=8"' in page

    with path.open("ab") as handle:
        handle.write(b"ee\nfour")
    poll = admin.get(f"{TASKS}{job.pk}/log/", {"attempt": 1, "offset": 8}).content.decode()
    assert 'hx-swap-oob="beforeend:#cr-log-lines">three\n</span>' in poll
    assert "offset=14" in poll

    Task.objects.filter(pk=job.pk).update(state=TaskState.SUCCEEDED)
    last = admin.get(f"{TASKS}{job.pk}/log/", {"attempt": 1, "offset": 14}).content.decode()
    assert ">four</span>" in last and "hx-get" not in last, "the end: the rest, and no poll"
    assert "The attempt has ended (task SUCCEEDED)." in last


@pytest.mark.parametrize("query", [{"attempt": 1, "offset": "x"}, {"attempt": "-1"},
                                   {"offset": 0}, {"attempt": 5, "offset": 0}])
def test_a_bad_poll_is_refused_with_the_reason(crucible, admin, query):
    job = Task.objects.create(func_path=f"{LOG_TASKS}.print_lines", timeout=60, attempt=1,
                              state=TaskState.RUNNING)
    response = admin.get(f"{TASKS}{job.pk}/log/", query)
    assert response.status_code in (400, 404)
    text = response.content.decode()
    assert any(word in text for word in ("offset", "attempt")), text


def test_the_worker_page_shows_its_log_its_heartbeat_and_how_it_stopped(workers, admin):
    enqueue("print_lines", "alpha", 2)
    proc = workers.start()
    worker = wait_for(lambda: Worker.objects.filter(state=WorkerState.RUNNING,
                                                    last_heartbeat__isnull=False).first(),
                      timeout=30)
    wait_for(lambda: Task.objects.filter(state=TaskState.SUCCEEDED).exists(), timeout=30)
    html = admin.get(f"{WORKERS}{worker.pk}/change/").content.decode()
    assert "[task " in html and "alpha line 1" in html, "the log file's lines, not a dash"
    assert f'href="{WORKERS}{worker.pk}/log/download/"' in html
    readable = r'datetime="[^"]+">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d</time> \((\d+ min )?\d+ s ago\)'
    assert re.search(readable, html) is not None, "a local, readable time and its age"
    assert "Failure reason" not in html and "Stop reason" not in html, "it has not ended"

    launcher.drain(worker.pk)
    assert proc.wait(timeout=30) == 0
    html = admin.get(f"{WORKERS}{worker.pk}/change/").content.decode()
    assert "Stop reason" in html and "drained by operator" in html
    assert "Failure reason" not in html
    assert "exit code 0" in html
    whole = body(admin.get(f"{WORKERS}{worker.pk}/log/download/"))
    assert b"alpha line 1" in whole and b"stopped: drained by operator" in whole


def test_a_failed_worker_shows_its_failure_and_signal(admin):
    worker = Worker.objects.create(node="n", state=WorkerState.FAILED, exit_code=-9,
                                   failure_reason="Process gone: killed")
    html = admin.get(f"{WORKERS}{worker.pk}/change/").content.decode()
    assert "Failure reason" in html and "Stop reason" not in html
    assert "killed by signal 9 (SIGKILL)" in html


def test_retention_removes_the_logs_of_pruned_tasks(crucible, settings):
    settings.CRUCIBLE = dataclasses.replace(crucible, result_retention=60.0)
    old = Task.objects.create(func_path=f"{LOG_TASKS}.print_lines", timeout=60, attempt=2,
                              state=TaskState.SUCCEEDED,
                              finished_at=timezone.now() - timedelta(hours=1))
    young = Task.objects.create(func_path=f"{LOG_TASKS}.print_lines", timeout=60, attempt=1,
                                state=TaskState.SUCCEEDED, finished_at=timezone.now())
    for task, number in ((old, 1), (old, 2), (young, 1)):
        path = attempt_file(crucible, task, number)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x\n")

    assert retention.prune().tasks == 1
    assert not files.task_log_dir(crucible.log_dir, old.pk).exists()
    assert attempt_file(crucible, young).read_text() == "x\n"
    assert logs.remove_task_logs([young.pk]) == 1


def test_an_aborted_worker_exits_with_the_code_it_records(workers, admin):
    proc = workers.start()
    worker = wait_for(lambda: Worker.objects.filter(state=WorkerState.RUNNING).first(),
                      timeout=30)
    launcher.abort(worker.pk)
    assert proc.wait(timeout=30) == 1
    ended = Worker.objects.get(pk=worker.pk)
    assert (ended.state, ended.exit_code, ended.failure_reason) == (
        WorkerState.DEAD, 1, "aborted by operator")
    html = admin.get(f"{WORKERS}{worker.pk}/change/").content.decode()
    assert "exit code 1" in html and "Stop reason" in html


def test_a_worker_stopped_by_ctrl_c_exits_like_a_program_interrupted(workers):
    proc = workers.start()
    worker = wait_for(lambda: Worker.objects.filter(state=WorkerState.RUNNING).first(),
                      timeout=30)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 128 + signal.SIGINT
    assert Worker.objects.get(pk=worker.pk).exit_code == 128 + signal.SIGINT


def test_the_page_shows_an_earlier_attempt_when_asked(crucible, admin):
    job = Task.objects.create(func_path=f"{LOG_TASKS}.print_lines", timeout=60, attempt=2,
                              state=TaskState.RUNNING)
    for number in (1, 2):
        path = attempt_file(crucible, job, number)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"attempt {number} said this\n")
    latest = admin.get(f"{TASKS}{job.pk}/change/").content.decode()
    assert "Log · Attempt 2" in latest and "attempt 2 said this" in latest
    assert 'hx-trigger="every 1s ' in latest, "a running attempt is polled every second"
    assert 'href="?attempt=1#cr-log"' not in latest, "no attempt row yet"
    TaskAttempt.objects.create(task=job, number=1, finished_at=timezone.now(),
                               outcome=Outcome.WORKER_LOST)
    rows = admin.get(f"{TASKS}{job.pk}/change/").content.decode()
    assert 'href="?attempt=1#cr-log">view</a>' in rows, "each attempt's row links its log"
    assert f'href="{TASKS}{job.pk}/log/1/download/" download>download</a>' in rows
    earlier = admin.get(f"{TASKS}{job.pk}/change/", {"attempt": 1}).content.decode()
    assert "Log · Attempt 1" in earlier and "attempt 1 said this" in earlier
    assert "attempt 2 said" not in earlier and "hx-trigger" not in earlier, "it has ended"


def test_a_log_from_elsewhere_shows_the_kept_tail_and_its_download_is_a_404(crucible, admin):
    job = Task.objects.create(func_path=f"{LOG_TASKS}.print_lines", timeout=60, attempt=1,
                              state=TaskState.FAILED, finished_at=timezone.now())
    TaskAttempt.objects.create(task=job, number=1, finished_at=timezone.now(),
                               outcome=Outcome.ERROR, log_tail="the kept last words\n")
    html = admin.get(f"{TASKS}{job.pk}/change/").content.decode()
    assert "the kept last words" in html and "The whole log is not on this machine" in html
    assert "/log/1/download/" not in html
    response = admin.get(f"{TASKS}{job.pk}/log/1/download/")
    assert response.status_code == 404 and "not on this machine" in response.content.decode()


def test_a_worker_log_needs_the_view_permission_of_workers(crucible, django_user_model):
    worker = Worker.objects.create(node="here")
    path = files.log_path(crucible.log_dir, worker.pk)
    path.parent.mkdir(parents=True)
    path.write_text("worker line\n")
    staff = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_task"))
    client = Client()
    client.force_login(staff)
    assert client.get(f"{WORKERS}{worker.pk}/log/download/").status_code == 403
    assert client.get(f"{WORKERS}{worker.pk}/log/", headers={"HX-Request": "true"}
                      ).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_worker"))
    client.force_login(User.objects.get(pk=staff.pk))
    response = client.get(f"{WORKERS}{worker.pk}/log/download/")
    assert response["Content-Disposition"] == f'attachment; filename="worker-{worker.pk}.log"'
    assert body(response) == b"worker line\n"


def _sqlite_write_lock_free() -> bool:
    probe = sqlite3.connect(str(connection.settings_dict["NAME"]), timeout=0.2)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.rollback()
    except sqlite3.OperationalError:
        return False
    finally:
        probe.close()
    return True


def freeze_holding_no_write_lock(proc: Any) -> None:
    """SIGSTOP the worker at a moment it holds no SQLite write lock: frozen while it held
    it, the worker would lock out every other writer on the machine, the test's too."""
    def frozen() -> bool:
        proc.send_signal(signal.SIGSTOP)
        if connection.vendor != "sqlite" or _sqlite_write_lock_free():
            return True
        proc.send_signal(signal.SIGCONT)
        return False

    wait_for(frozen, timeout=30, every=0.05)


def test_a_worker_the_monitor_kills_shows_the_signal(workers):
    proc = workers.start()
    worker = wait_for(lambda: Worker.objects.filter(state=WorkerState.RUNNING).first(),
                      timeout=30)
    freeze_holding_no_write_lock(proc)  # frozen: it cannot act on the abort itself
    launcher.abort(worker.pk)
    wait_for(lambda: monitor.tick().killed == [worker.pk], timeout=15, every=0.2)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    ended = Worker.objects.get(pk=worker.pk)
    assert (ended.state, ended.exit_code) == (WorkerState.FAILED, -signal.SIGKILL)


def test_each_node_sweeps_the_logs_of_tasks_pruned_elsewhere(crucible):
    kept = Task.objects.create(func_path=f"{LOG_TASKS}.print_lines", timeout=60, attempt=1)
    base = kept.pk // 1000 * 1000
    neighbours = [n for n in range(base, base + 1000) if n != kept.pk][-2:]  # same folder
    gone_ids = [*neighbours, 1_000_000 + kept.pk, 2_000_000 + kept.pk]
    for task_id in [kept.pk, *gone_ids]:
        path = files.attempt_log_path(crucible.log_dir, task_id, 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x\n")
    folders = sorted({task_id // 1000 for task_id in [kept.pk, *gone_ids]})

    report = monitor.tick(leases=False)  # this process's tick, as on any node
    assert report.swept_logs == 2, "the first folder: its two pruned tasks, one a tick"
    assert files.attempt_log_path(crucible.log_dir, kept.pk, 1).exists()
    assert logs.sweep_orphans() == 1
    assert not files.shard_dir(crucible.log_dir, folders[1]).exists(), "an empty folder goes"
    assert logs.sweep_orphans() == 1
    assert files.shard_dir(crucible.log_dir, folders[2]).exists(), "but not the newest"
    assert logs.sweep_orphans() == 0, "round the folders again: what is left exists"
    assert [p.name for p in files.task_log_dir(crucible.log_dir, kept.pk).iterdir()] == [
        "attempt_1.log"]


def test_a_worker_started_by_hand_writes_every_line_to_its_console_by_its_exit(
        workers, crucible):
    """Its console lines are held while it is busy and written when its loop waits, and
    at its exit: none is lost, none comes twice, and they keep their order."""
    from tests.testapp import backend_tasks

    ids = [backend_tasks.add.enqueue(n, 1).id for n in range(40)]
    run_batch(workers)

    lines = workers.output(0).splitlines()
    path = "tests.testapp.backend_tasks.add"
    for state in ("RUNNING", "SUCCESSFUL"):
        found = [line for line in lines if line.endswith(f"path={path} state={state}")]
        assert [line.split("Task id=")[1].split()[0] for line in found] == ids
    assert lines[-1].endswith("stopped: batch finished: nothing left to claim")


def test_djangos_lines_about_a_task_go_to_the_worker_log_not_to_its_attempt(workers, crucible):
    from tests.testapp import backend_tasks

    added = backend_tasks.add.enqueue(1, 2)
    failed = backend_tasks.always_fails.using(priority=-1).enqueue("broken on purpose")
    run_batch(workers)

    worker = Worker.objects.get()
    text = files.log_path(crucible.log_dir, worker.pk).read_text()
    path = "tests.testapp.backend_tasks"
    for state in ("RUNNING", "SUCCESSFUL"):
        assert f"INFO django.tasks Task id={added.id} path={path}.add state={state}\n" in text
    assert f"ERROR django.tasks Task id={failed.id} path={path}.always_fails state=FAILED\n" in (
        text), "Django's failure line, with the traceback after it"
    assert "ValueError: broken on purpose" in text
    quiet = Task.objects.get(pk=added.id)
    assert not attempt_file(crucible, quiet).exists(), "a task that wrote nothing has no log"
    assert attempt(quiet).log_tail == ""
    own = attempt_file(crucible, Task.objects.get(pk=failed.id)).read_text()
    assert own.startswith("[crucible] attempt ended ERROR: ") and "django.tasks" not in own

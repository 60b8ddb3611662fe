"""Admin pages of simulations and sweeps, with the Django test client (no worker processes)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone

from simulations import services
from simulations.kinds import slab, summary
from simulations.models import Simulation, Sweep
from workers.models import Run, Task, TaskAttempt, Worker
from workers.models.run import RunState
from workers.runtime.logs import log_path
from workers.states import Outcome, TaskState, WorkerState

pytestmark = [
    pytest.mark.django_db,
    # No collectstatic in tests: WhiteNoise warns that STATIC_ROOT does not exist yet.
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

SMALL = {"n": "11", "t_end": "60", "target_temp": "850"}


def url(name: str, *args: object) -> str:
    return reverse(f"admin:simulations_{name}", args=args)


def task_id(row: Simulation | Sweep) -> int:
    found = row.task_id if isinstance(row, Simulation) else row.summary_task_id
    assert found is not None
    return found


def set_task(row: Simulation | Sweep, **fields: object) -> None:
    Task.objects.filter(pk=task_id(row)).update(**fields)


@pytest.fixture
def finished(crucible):
    sim = services.submit("slab", SMALL, services.Options(name="done"))
    slab.run.call(simulation_id=sim.pk)
    set_task(sim, state=TaskState.SUCCEEDED, progress=1.0, finished_at=timezone.now())
    sim.refresh_from_db()
    return sim


@pytest.fixture
def running(crucible):
    sim = services.submit("slab", SMALL, services.Options(name="busy"))
    worker = Worker.objects.create(node="here", state=WorkerState.RUNNING)
    set_task(sim, state=TaskState.RUNNING, progress=0.42, progress_message="step 42/100",
             worker=worker, attempt=1)
    log = log_path(crucible.log_dir, worker.pk)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(
        f"2026-01-01 10:00:00,000 INFO workers.task [task {sim.task_id}] hello from the task\n"
        f"2026-01-01 10:00:01,000 INFO workers.task [task 999999] someone else\n"
    )
    return sim


@pytest.fixture
def failed(crucible):
    sim = services.submit("slab", SMALL, services.Options(name="broken"))
    set_task(sim, state=TaskState.FAILED, progress=0.1, attempt=1,
             error="ValueError: the slab melted", finished_at=timezone.now())
    TaskAttempt.objects.create(
        task_id=task_id(sim), number=1, finished_at=timezone.now(), outcome=Outcome.ERROR,
        error="ValueError: the slab melted",
        traceback="Traceback (most recent call last):\n  ...\nValueError: the slab melted",
        log_tail="last words of the task",
    )
    return sim


def test_the_list_shows_state_and_a_progress_bar(admin_client, finished, running, failed):
    page = admin_client.get(url("simulation_changelist")).content.decode()
    assert "width: 42%" in page
    assert "width: 100%" in page
    assert ">running<" in page
    assert ">failed<" in page


def test_a_finished_simulation_shows_results_plot_and_files(admin_client, finished):
    page = admin_client.get(url("simulation_change", finished.pk)).content.decode()
    assert "succeeded" in page
    assert "width: 100%" in page
    assert "Time to target" in page
    assert f"{finished.result['time_to_target']:.6g}"[:5] in page
    assert "Heat-transfer coefficient" in page and "500 W/m²K" in page
    assert url("simulation_plot", finished.pk) in page
    assert url("simulation_file", finished.pk, "curves.csv") in page
    assert "hx-trigger" not in page, "a finished page does not poll"

    plot = admin_client.get(url("simulation_plot", finished.pk))
    assert plot.status_code == 200
    assert plot["Content-Type"] == "image/svg+xml"
    assert b"<svg" in plot.content


def test_a_running_simulation_shows_progress_log_and_cancel(admin_client, running):
    page = admin_client.get(url("simulation_change", running.pk)).content.decode()
    assert "width: 42%" in page
    assert "step 42/100" in page
    assert "hello from the task" in page
    assert "someone else" not in page
    assert url("simulation_cancel", running.pk) in page
    assert 'hx-trigger="every 2s"' in page
    assert "No results yet." in page

    partial = admin_client.get(url("simulation_change", running.pk), headers={"HX-Request": "true"})
    body = partial.content.decode()
    assert body.lstrip().startswith('<div id="sim-status"')
    assert "width: 42%" in body
    assert "<html" not in body

    set_task(running, state=TaskState.SUCCEEDED)
    ended = admin_client.get(url("simulation_change", running.pk), headers={"HX-Request": "true"})
    assert ended["HX-Refresh"] == "true", "the whole page reloads to show the results"


def test_a_failed_simulation_shows_the_error_and_traceback(admin_client, failed):
    page = admin_client.get(url("simulation_change", failed.pk)).content.decode()
    assert "failed" in page
    assert "ValueError: the slab melted" in page
    assert "Traceback (most recent call last)" in page
    assert "last words of the task" in page, "the attempt's log tail when no log file is found"
    assert url("simulation_cancel", failed.pk) not in page


def test_a_finished_simulations_attempts_link_the_worker_that_ran_each(admin_client, failed):
    worker = Worker.objects.create(node="lab", state=WorkerState.DEAD)
    TaskAttempt.objects.filter(task_id=task_id(failed)).update(worker=worker,
                                                                worker_label=f"worker {worker.pk}")

    page = admin_client.get(url("simulation_change", failed.pk)).content.decode()

    link = reverse("admin:workers_worker_change", args=[worker.pk])
    assert f'<a href="{link}">worker {worker.pk}</a>' in page


def test_cancel_from_the_page(admin_client, crucible):
    sim = services.submit("slab", SMALL)
    response = admin_client.post(url("simulation_cancel", sim.pk))
    assert response.status_code == 302
    assert Task.objects.get(pk=task_id(sim)).state == TaskState.CANCELLED
    assert admin_client.get(url("simulation_cancel", sim.pk)).status_code == 405


def test_add_leads_to_the_kind_choice_and_the_generated_form(admin_client, crucible):
    assert admin_client.get(url("simulation_add")).url == url("simulation_submit")
    choose = admin_client.get(url("simulation_submit")).content.decode()
    assert url("simulation_submit_kind", "slab") in choose
    assert url("simulation_submit_kind", "lorenz") in choose
    form = admin_client.get(url("simulation_submit_kind", "slab")).content.decode()
    assert "Heat-transfer coefficient (W/m²K)" in form
    assert "allowed: 1..1e5 W/m²K; default 500 W/m²K" in form
    assert 'name="history"' in form and 'type="checkbox"' in form
    assert admin_client.get(url("simulation_submit_kind", "nope")).status_code == 404


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"h": "5e6"}, "h: 5e6 is outside 1..1e5 W/m²K"),
        ({"n": "ten"}, "n: expected a number, got &#x27;ten&#x27;"),
        ({"target_temp": "5"}, "target_temp: 5 °C is never reached"),
        ({"priority": "high"}, "priority: expected a number, got &#x27;high&#x27;"),
        ({"sweep": "h=1,2\nthickness"}, "sweep: expected name=value1,value2"),
        ({"sweep": "h=1,5e6"}, "h: 5e6 is outside 1..1e5 W/m²K"),
    ],
)
def test_bad_input_is_a_form_error_naming_the_parameter(admin_client, crucible, data, message):
    response = admin_client.post(url("simulation_submit_kind", "slab"), data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert 'class="errorlist' in response.content.decode()
    assert not Simulation.objects.exists()
    assert not Task.objects.exists()


def test_a_good_form_submits_and_leads_to_the_page(admin_client, admin_user, crucible):
    response = admin_client.post(url("simulation_submit_kind", "slab"),
                                 {"h": "250", "n": "21", "name": "from the form", "priority": "3"})
    sim = Simulation.objects.get()
    assert response.url == url("simulation_change", sim.pk)
    assert sim.parameters["h"] == 250.0
    assert sim.parameters["thickness"] == 0.1, "an untouched field keeps its default"
    assert sim.submitted_by == admin_user
    assert Task.objects.get(pk=task_id(sim)).priority == 3


def test_a_form_with_a_grid_submits_a_sweep(admin_client, crucible):
    response = admin_client.post(url("simulation_submit_kind", "slab"),
                                 {"h": "250", "sweep": "h=10,100\nthickness=0.05,0.1,0.2"})
    sweep = Sweep.objects.get()
    assert response.url == url("sweep_change", sweep.pk)
    assert sweep.simulations.count() == 6


def test_files_download_only_from_inside_the_work_directory(admin_client, finished, crucible):
    ok = admin_client.get(url("simulation_file", finished.pk, "curves.csv"))
    assert ok.status_code == 200
    assert ok["Content-Disposition"].startswith('attachment; filename="curves.csv"')
    assert b"time_s,core_C,surface_C" in b"".join(ok.streaming_content)
    (crucible.work_dir / "secret.txt").write_text("not yours")
    base = url("simulation_file", finished.pk, "x")[:-1]
    for name in ["../../secret.txt", "..%2F..%2Fsecret.txt", "%2Fetc%2Fpasswd", "nope.csv"]:
        assert admin_client.get(base + name).status_code == 404, name


@pytest.mark.parametrize("name", ["%00", "a%00b.csv", "x" * 256, "d/" + "x" * 300, "é" * 128])
@pytest.mark.parametrize("owner", ["simulation", "sweep"])
def test_a_name_no_file_system_takes_is_a_404(admin_client, finished, crucible, name, owner):
    """A NUL byte or a name over 255 bytes made the file system raise: a 500."""
    sweep = services.submit_sweep("slab", SMALL, [("h", ["100", "1000"])])
    (crucible.work_dir / "sweep" / str(sweep.pk)).mkdir(parents=True)
    row_id = finished.pk if owner == "simulation" else sweep.pk
    base = url(f"{owner}_file", row_id, "x")[:-1]

    response = admin_client.get(base + name)

    assert response.status_code == 404


def test_downloads_need_staff_and_the_view_permission(client, finished):
    link = url("simulation_file", finished.pk, "curves.csv")
    user = User.objects.create_user("modeller", password="pw", is_staff=False)
    client.force_login(user)
    assert client.get(link).status_code == 302, "not staff: to the login page"
    user.is_staff = True
    user.save()
    assert client.get(link).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_simulation"))
    user = User.objects.get(pk=user.pk)
    client.force_login(user)
    assert client.get(link).status_code == 200
    assert client.post(url("simulation_cancel", finished.pk)).status_code == 403


def test_the_sweep_page_shows_points_table_and_comparison_plot(admin_client, crucible):
    sweep = services.submit_sweep("slab", {"t_end": "3000", "n": "11", "target_temp": "600"},
                                  [("h", ["100", "1000"])])
    for point in sweep.simulations.all():
        slab.run.call(simulation_id=point.pk)
        set_task(point, state=TaskState.SUCCEEDED, progress=1.0)
    summary.summarise.call(sweep_id=sweep.pk)
    set_task(sweep, state=TaskState.SUCCEEDED)

    page = admin_client.get(url("sweep_change", sweep.pk)).content.decode()
    plot = url("sweep_file", sweep.pk, "comparison.png")
    assert f"{plot}?inline=1" in page
    assert "Time to target (s)" in page
    assert "2 of 2 succeeded" in page
    assert url("sweep_file", sweep.pk, "comparison.csv") in page
    image = admin_client.get(plot, {"inline": "1"})
    assert image["Content-Type"] == "image/png"
    assert "attachment" not in image.get("Content-Disposition", "")
    listing = admin_client.get(url("sweep_changelist")).content.decode()
    assert ">succeeded<" in listing


def test_a_waiting_sweep_page_and_its_cancel(admin_client, crucible):
    sweep = services.submit_sweep("slab", SMALL, [("h", ["100", "1000"])])
    page = admin_client.get(url("sweep_change", sweep.pk)).content.decode()
    assert "0 of 2 succeeded" in page
    assert "No files yet" in page
    summary_page = reverse("admin:workers_task_change", args=[sweep.summary_task_id])
    assert f'<a href="{summary_page}">task {sweep.summary_task_id}</a>' in page, (
        "the summary step links its task")
    admin_client.post(url("sweep_cancel", sweep.pk))
    assert set(Task.objects.values_list("state", flat=True)) == {TaskState.CANCELLED}
    run = Run.objects.get(sweep=sweep)
    assert (run.state, run.reason) == (RunState.CANCELLED, "Cancelled by admin.")

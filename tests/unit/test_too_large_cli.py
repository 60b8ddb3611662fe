"""``manage.py enqueue`` refuses a task larger than every node's budget, unless --force."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from simulations import services
from simulations.exceptions import InvalidParameters
from workers.models import Node, Run, Task

pytestmark = pytest.mark.django_db

ADD = "tests.testapp.tasks.add"


@pytest.fixture
def small_node(crucible):
    return Node.objects.create(name="small-node", memory_mb=1000, cpus=2)


def test_the_cli_refuses_naming_both_figures(small_node):
    with pytest.raises(CommandError) as refused:
        call_command("enqueue", ADD, "--args", "[1, 2]", "--memory-mb", "1500")

    assert str(refused.value) == (
        "Refused: memory_mb: needs 1.5 GB (declared), more than any node's budget: the "
        "largest is 1,000 MB (small-node). Submit with force to queue it anyway (it then "
        "runs only on a node with nothing else running)")
    assert not Task.objects.exists()


def test_the_cli_queues_it_with_force(small_node, capsys):
    call_command("enqueue", ADD, "--args", "[1, 2]", "--memory-mb", "1500", "--cpus", "2",
                 "--memory-limit-mb", "2000", "--force")

    task = Task.objects.get(pk=int(capsys.readouterr().out))
    assert (task.memory_estimate_mb, task.cpus, task.memory_limit_mb) == (1500, 2, 2000)


def test_a_simulation_too_large_for_every_node_is_refused_and_nothing_written(crucible):
    Node.objects.create(name="tiny-node", memory_mb=50, cpus=2)

    with pytest.raises(InvalidParameters) as refused:
        services.submit("slab", {"n": "11", "t_end": "60", "target_temp": "850"})

    assert "more than any node's budget: the largest is 50 MB (tiny-node)" in str(
        refused.value)
    assert not Task.objects.exists()


@pytest.mark.filterwarnings("ignore:No directory at:UserWarning")
def test_the_submit_form_shows_the_refusal_as_a_form_error(admin_client, crucible):
    from django.urls import reverse

    from simulations.models import Simulation

    Node.objects.create(name="tiny-node", memory_mb=50, cpus=2)

    response = admin_client.post(reverse("admin:simulations_simulation_submit_kind",
                                         args=["slab"]), {"n": "11"})

    page = response.content.decode()
    assert response.status_code == 200
    assert 'class="errornote"' in page, "a form-wide error"
    assert "more than any node&#x27;s budget: the largest is 50 MB (tiny-node)" in page
    assert not Simulation.objects.exists()
    assert not Task.objects.exists()


@pytest.mark.filterwarnings("ignore:No directory at:UserWarning")
def test_the_submit_form_queues_it_when_forced(admin_client, crucible):
    from django.urls import reverse

    from simulations.models import Simulation

    Node.objects.create(name="tiny-node", memory_mb=50, cpus=2)

    admin_client.post(reverse("admin:simulations_simulation_submit_kind", args=["slab"]),
                      {"n": "11", "force": "on"})

    sim = Simulation.objects.get()
    assert sim.task_id is not None
    task = Task.objects.get(pk=sim.task_id)
    assert task.memory_estimate_mb == sim.memory_mb > 50


def test_a_sweep_too_large_for_every_node_is_refused_like_a_simulation(crucible):
    Node.objects.create(name="tiny-node", memory_mb=50, cpus=2)

    with pytest.raises(InvalidParameters) as refused:
        services.submit_sweep("slab", {"n": "11", "t_end": "60"}, [("h", ["100", "1000"])])

    assert refused.value.errors[0].name == "memory_mb"
    assert "more than any node's budget: the largest is 50 MB (tiny-node)" in str(
        refused.value)
    assert not Task.objects.exists() and not Run.objects.exists()

    forced = services.submit_sweep("slab", {"n": "11", "t_end": "60"},
                                   [("h", ["100", "1000"])], services.Options(force=True))
    assert Task.objects.filter(run=forced.run).count() == 3

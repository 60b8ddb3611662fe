"""The allow-list of tasks the API may enqueue: discovered @task functions plus a setting."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from workers.exceptions import InvalidTaskSpec
from workers.models import Task
from workers.spec import TaskSpec
from workers.web import registry

APP = "regapp"
SOURCE = {
    "__init__.py": "",
    "physics.py": """
        from django.tasks import task

        @task
        def simulate(steps):
            return steps

        def helper():
            return None
    """,
    "tasks.py": """
        import os

        from django.tasks import task

        from .physics import helper, simulate

        @task(priority=5)
        def sweep(n):
            return n

        def plain(n):
            return n
    """,
}


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An installed app whose tasks module defines and re-exports @task functions."""
    package = tmp_path / APP
    package.mkdir()
    for name, text in SOURCE.items():
        (package / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(tmp_path))
    with override_settings(
        INSTALLED_APPS=[*django_settings.INSTALLED_APPS, APP],
        TASKS={"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}},
    ):
        yield APP
    for module in [name for name in sys.modules if name.split(".")[0] == APP]:
        del sys.modules[module]
    registry.discovered.cache_clear()


def test_the_task_functions_of_installed_apps_are_discovered(app):
    found = registry.discovered()

    assert f"{APP}.tasks.sweep" in found
    assert f"{APP}.physics.simulate" in found, "where the task is defined"
    assert f"{APP}.tasks.simulate" in found, "and where the app's tasks module exposes it"


def test_plain_functions_and_other_names_are_not(app):
    found = registry.discovered()

    for path in (f"{APP}.tasks.plain", f"{APP}.tasks.helper", f"{APP}.physics.helper",
                 f"{APP}.tasks.os", "os.system"):
        assert path not in found


def test_discovery_is_forgotten_when_the_installed_apps_change(app):
    assert f"{APP}.tasks.sweep" in registry.discovered()
    with override_settings(INSTALLED_APPS=[a for a in django_settings.INSTALLED_APPS if a != APP]):
        assert f"{APP}.tasks.sweep" not in registry.discovered()


def test_the_setting_adds_dotted_paths(settings):
    settings.CRUCIBLE_TASK_ALLOWLIST = ["tests.testapp.tasks.add"]

    assert registry.is_allowed("tests.testapp.tasks.add")
    assert not registry.is_allowed("tests.testapp.tasks.record")


def test_without_the_setting_nothing_extra_is_allowed(settings):
    del settings.CRUCIBLE_TASK_ALLOWLIST

    assert registry.configured() == frozenset()


@pytest.mark.parametrize("value", ["tests.testapp.tasks.add", [1], None])
def test_a_malformed_setting_is_a_configuration_error(settings, value):
    settings.CRUCIBLE_TASK_ALLOWLIST = value

    with pytest.raises(ImproperlyConfigured, match="CRUCIBLE_TASK_ALLOWLIST"):
        registry.allowed()


@pytest.mark.django_db
def test_enqueue_refuses_a_path_off_the_list_before_importing_it(settings):
    settings.CRUCIBLE_TASK_ALLOWLIST = []

    with pytest.raises(InvalidTaskSpec) as refused:
        registry.enqueue(TaskSpec(func_path="never_imported_module.run"))

    assert refused.value.field == "func_path"
    assert "is not an allowed task" in refused.value.message
    assert "never_imported_module" not in sys.modules
    assert Task.objects.count() == 0


@pytest.mark.django_db
def test_enqueue_queues_an_allowed_path(settings):
    settings.CRUCIBLE_TASK_ALLOWLIST = ["tests.testapp.tasks.add"]

    task = registry.enqueue(TaskSpec(func_path="tests.testapp.tasks.add", args=[1, 2]))

    assert Task.objects.get(pk=task.pk).args == [1, 2]


@pytest.mark.django_db
def test_an_allowed_task_function_is_enqueued_by_its_path(app):
    task = registry.enqueue(TaskSpec(func_path=f"{APP}.tasks.sweep", args=[3]))

    assert task.func_path == f"{APP}.tasks.sweep"

"""Crucible's commands as a terminal user meets them: every option explained, ``workers add``
offers what fits, ``workers list`` says why a worker ended."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command, get_commands, load_command_class

from workers.models import Worker
from workers.pool import admission, launcher
from workers.states import WorkerState

CRUCIBLE_APPS = {"workers", "simulations"}


def crucible_commands() -> list[tuple[str, str]]:
    return sorted((name, app) for name, app in get_commands().items() if app in CRUCIBLE_APPS)


def actions(parser: argparse.ArgumentParser, where: str) -> Iterator[tuple[str, argparse.Action]]:
    for action in parser._actions:
        yield where, action
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                yield where, choice
            for name, sub in action.choices.items():
                yield from actions(sub, f"{where} {name}")


def test_the_crucible_commands_are_found():
    names = {name for name, _ in crucible_commands()}

    assert {"workers", "enqueue", "runworker", "simulate", "createapitoken"} <= names


@pytest.mark.parametrize(("name", "app"), crucible_commands())
def test_every_option_of_every_command_has_help(name, app):
    parser = load_command_class(app, name).create_parser("manage.py", name)

    missing = [f"{where}: {action.option_strings or action.dest}"
               for where, action in actions(parser, name) if not (action.help or "").strip()]

    assert missing == []


# --- workers add: start what fits ---


@pytest.fixture
def room_for_one(settings: Any, crucible: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Memory admits one worker (the cap is 4); launches are recorded, not started: the
    reserved rows are what admission counts (as in test_hard_cap.py)."""
    monkeypatch.setattr(admission, "_physical_cores", lambda: 64)
    tiny = admission.MachineMemory(total=2**34, available=2**20, percent=99.0)
    monkeypatch.setattr(admission, "_virtual_memory", lambda: tiny)
    settings.CRUCIBLE = dataclasses.replace(
        settings.CRUCIBLE, max_count=4, memory_per_task_mb=1, memory_guard_mb=0
    )
    launched: list[int] = []

    def launch(worker: Worker, token: str, queues: list[str]) -> Worker:
        launched.append(worker.pk)
        return worker

    monkeypatch.setattr(launcher, "_launch", launch)
    return launched


def workers(*args: str) -> str:
    out = StringIO()
    call_command("workers", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_add_more_than_fits_offers_to_start_what_fits(room_for_one):
    with pytest.raises(CommandError) as refused:
        workers("add", "--count", "2")

    assert str(refused.value).endswith(
        "none are active. 1 would fit now: add --fit to start it. Use --force to start anyway.")
    assert room_for_one == [] and not Worker.objects.exists()


@pytest.mark.django_db
def test_add_fit_starts_what_fits_and_says_how_many_were_not_started_and_why(room_for_one):
    printed = workers("add", "--count", "2", "--fit").splitlines()

    started = Worker.objects.get()
    assert room_for_one == [started.pk]
    assert printed[0] == f"started worker {started.pk} (pid None)"
    assert printed[1].startswith("1 of 2 not started: Memory allows 1 worker")
    assert printed[1].endswith("none are active."), "as it was when the limit was applied"


@pytest.mark.django_db
def test_add_fit_with_no_room_at_all_is_refused(room_for_one, settings):
    settings.CRUCIBLE = dataclasses.replace(settings.CRUCIBLE, max_count=1)
    workers("add")

    with pytest.raises(CommandError, match=r"Cannot add 1: WORKER_MAX_COUNT allows 1 worker"):
        workers("add", "--count", "3", "--fit")
    assert Worker.objects.count() == 1


@pytest.mark.django_db
def test_add_fit_with_force_stops_at_the_cap_and_says_so(room_for_one):
    printed = workers("add", "--count", "6", "--fit", "--force").splitlines()

    assert len(room_for_one) == 4
    assert printed[-1] == ("2 of 6 not started: WORKER_MAX_COUNT is 4 (force never goes past "
                           "it); 0 were active.")


# --- workers list: why a worker ended ---


@pytest.mark.django_db
def test_list_says_why_each_ended_worker_ended_within_80_columns(crucible):
    drained = Worker.objects.create(node="n1", state=WorkerState.DEAD, exit_code=0,
                                    failure_reason="drained after SIGTERM")
    crashed = Worker.objects.create(
        node="n1", state=WorkerState.FAILED, exit_code=1,
        failure_reason="Worker crashed: OperationalError: " + "the database is locked " * 6)
    silent = Worker.objects.create(node="n1", state=WorkerState.DEAD)
    alive = Worker.objects.create(node="n1", state=WorkerState.RUNNING)

    lines = workers("list").splitlines()

    assert all(len(line) <= 80 for line in lines), lines
    text = "\n".join(lines)
    assert "      dead: drained after SIGTERM\n" in text
    assert "      failed: Worker crashed: OperationalError: the database is locked" in text
    assert lines[-1].startswith(f"{alive.pk:>5} RUNNING"), "a live worker has no reason line"
    assert "(exit code 1)" in text and "      dead: no reason recorded" in text
    assert [line.split()[0] for line in lines if not line.startswith("      ")][1:] == [
        str(w.pk) for w in (drained, crashed, silent, alive)]

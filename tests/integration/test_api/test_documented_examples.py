"""Every command of README.md and docs/*.md that submits work (``manage.py enqueue``,
``manage.py simulate``, ``curl`` against the API) runs as written, against a real worker,
and what it submitted succeeds. A comment ``# prints "..."`` is checked too."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from tests.conftest import ROOT, wait_for
from workers.models import Task
from workers.states import FINISHED_TASK_STATES, TaskState
from workers.web import tokens

from .conftest import NO_STATIC_ROOT

pytestmark = [pytest.mark.django_db(transaction=True, reset_sequences=True),
              pytest.mark.integration, NO_STATIC_ROOT]

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SUBMITTING = {"enqueue", "simulate"}
FENCE = re.compile(r"^\s*```")
PRINTS = re.compile(r'#\s*prints "([^"]+)"')


@dataclass(frozen=True, slots=True)
class Example:
    where: str
    argv: list[str]
    prints: str = ""

    @property
    def is_curl(self) -> bool:
        return self.argv[0] == "curl"

    @property
    def command(self) -> list[str]:
        """``manage.py NAME ARGS...`` as ``[NAME, ARGS...]``."""
        at = next(i for i, word in enumerate(self.argv) if word.endswith("manage.py"))
        return self.argv[at + 1:]


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """The lines of fenced code blocks, continuation lines joined, prompts removed."""
    found: list[tuple[int, str]] = []
    inside, pending, start = False, "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        if FENCE.match(raw):
            inside, pending = not inside, ""
            continue
        if not inside:
            continue
        line = raw.strip().removeprefix("$ ")
        start = start if pending else number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        found.append((start, pending + line))
        pending = ""
    return found


def _example(path: Path, number: int, line: str) -> Example | None:
    try:
        argv = shlex.split(line, comments=True)
    except ValueError:
        return None  # not shell
    words = [word.rpartition("/")[2] for word in argv]
    submits = "manage.py" in words and words[words.index("manage.py") + 1] in SUBMITTING
    if not (submits or (argv and argv[0] == "curl")):
        return None
    prints = PRINTS.search(line)
    return Example(f"{path.relative_to(ROOT)}:{number}", argv, prints.group(1) if prints else "")


def examples(path: Path) -> list[Example]:
    found = (_example(path, number, line) for number, line in _code_lines(path))
    return [example for example in found if example is not None]


def _curl(example: Example, token: str) -> Any:
    """The request a ``curl`` line makes, through the test client."""
    argv = [word.replace("$CRUCIBLE_TOKEN", token) for word in example.argv[1:]]
    method, headers, data, url = "GET", {}, "", ""
    words = iter(argv)
    for word in words:
        if word == "-X":
            method = next(words)
        elif word == "-H":
            name, _, value = next(words).partition(": ")
            headers[name] = value
        elif word == "-d":
            data, method = next(words), "POST" if method == "GET" else method
        elif not word.startswith("-"):
            url = word
    path = re.sub(r"^https?://[^/]+", "", url)
    content_type = headers.pop("Content-Type", "application/octet-stream")
    return Client().generic(method, path, data, content_type=content_type, headers=headers)


def replay(example: Example, token: str) -> str:
    if example.is_curl:
        response = _curl(example, token)
        assert response.status_code < 300, (example.where, response.content[:500])
        return str(response.content.decode())
    out = StringIO()
    call_command(*example.command, stdout=out)
    return out.getvalue()


@pytest.fixture
def token(db: None) -> str:
    return tokens.create(User.objects.create_superuser("alice", password="pw")).key


def test_the_documents_have_examples_to_replay():
    found = {str(path.relative_to(ROOT)): examples(path) for path in DOCUMENTS}

    assert any(e.is_curl and "/api/tasks/" in e.argv[-1] for e in found["docs/api.md"])
    assert all(found[name] for name in ("README.md", "docs/simulations.md",
                                        "docs/operations.md"))


@pytest.mark.parametrize("document", [p for p in DOCUMENTS if examples(p)],
                         ids=lambda path: path.name)
def test_every_documented_submission_runs_as_written(document, workers, token):
    workers.start()
    for example in examples(document):
        printed = replay(example, token)
        assert example.prints in printed, (example.where, printed)

    ended = wait_for(
        lambda: (tasks := list(Task.objects.order_by("pk"))) and all(
            task.state in FINISHED_TASK_STATES for task in tasks) and tasks,
        timeout=120,
    )
    assert [(t.func_path, t.state, t.error) for t in ended if t.state != TaskState.SUCCEEDED
            ] == []

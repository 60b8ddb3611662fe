"""The Makefile, read by ``make -n`` (a dry run: nothing is installed or started)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def dry_run(target: str) -> list[str]:
    """The commands ``make TARGET`` would run on a fresh clone (-B: as if nothing were built).
    PYTHON is given so that make does not look for an interpreter (slow on a busy machine)."""
    command = ["make", "--no-print-directory", "-n", "-B", "-C", str(ROOT), "PYTHON=python3"]
    done = subprocess.run([*command, target],
                          capture_output=True, text=True, check=True, timeout=60)
    return done.stdout.splitlines()


def installs(commands: list[str]) -> list[str]:
    return [line for line in commands if "pip install" in line and "--upgrade pip" not in line]


def test_run_installs_only_the_runtime_dependencies_and_says_so_first():
    """It installed the development extras (Playwright, mypy), quietly, for minutes."""
    commands = dry_run("run")

    pip = installs(commands)
    assert pip, "make run installs the project"
    assert not [line for line in pip if "[dev]" in line or "--quiet" in line], pip
    first = commands.index(pip[0])
    assert any(line.startswith("echo") and "Installing" in line
               for line in commands[:first]), "a message comes before the install"
    assert any(line.startswith("echo") and "Serving" in line for line in commands)


@pytest.mark.parametrize("target", ["test", "lint", "screenshots", "bench"])
def test_tests_and_linters_still_get_the_development_extras(target):
    assert any('".[dev]"' in line for line in installs(dry_run(target)))

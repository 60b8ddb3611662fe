"""Run a registered external program in a work directory, its output into the task log.

The command comes only from a ``Program`` definition (a script shipped with Crucible and an
argument template); parameters are validated values substituted into single arguments,
never a shell line, so nothing a user types can choose what runs.

The program is a child of the task's executor: a timeout, a cancel or an abort kills the
executor's whole process tree, the program included.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .exceptions import ProgramFailed
from .runner import Progress
from .schema import Params

logger = logging.getLogger(__name__)
PROGRAMS_DIR = Path(__file__).resolve().parent / "programs"
PROGRESS_PREFIX = "PROGRESS "
LOG_FILE = "program.log"
TAIL_LINES = 20


@dataclass(frozen=True, slots=True)
class Program:
    """A script in ``simulations/programs`` and how parameters become its arguments."""

    script: str
    arguments: tuple[str, ...]  # e.g. "--sigma={sigma}": one argv element each

    def command(self, params: Params) -> list[str]:
        script = (PROGRAMS_DIR / self.script).resolve()
        if not script.is_relative_to(PROGRAMS_DIR) or not script.is_file():
            raise ProgramFailed(f"program {self.script!r} is not in {PROGRAMS_DIR}")
        # -I: isolated from the environment and user site; -u: unbuffered output.
        return [sys.executable, "-I", "-u", str(script),
                *(argument.format_map(params) for argument in self.arguments)]


def environment() -> dict[str, str]:
    """Only what the program needs: no database URL, no secrets."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ", "TMPDIR")
    return {name: os.environ[name] for name in keep if name in os.environ}


def run(program: Program, params: Params, directory: Path, progress: Progress) -> None:
    """Run to completion; ProgramFailed on a non-zero exit, with the last lines of output."""
    command = program.command(params)
    logger.info("running %s in %s", " ".join(command), directory)
    # The command is built from a registered program, never from user input.
    with subprocess.Popen(
        command, cwd=directory, env=environment(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
    ) as proc:
        assert proc.stdout is not None
        tail = relay(proc.stdout, directory / LOG_FILE, progress)
        code = proc.wait()
    if code != 0:
        last = "\n".join(tail)
        raise ProgramFailed(f"{program.script} exited with code {code}:\n{last}")


def relay(stream: IO[str], log_file: Path, progress: Progress) -> deque[str]:
    """Copy output lines to the task log and the program log; turn PROGRESS lines into
    progress reports. Return the last lines."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with log_file.open("w") as log:
        for line in stream:
            text = line.rstrip("\n")
            if text.startswith(PROGRESS_PREFIX):
                _report(text[len(PROGRESS_PREFIX):], progress)
                continue
            sys.stdout.write(line)
            log.write(line)
            log.flush()
            tail.append(text)
    return tail


def _report(text: str, progress: Progress) -> None:
    fraction, _, message = text.partition(" ")
    try:
        value = float(fraction)
    except ValueError:
        logger.warning("ignored a malformed progress line: %r", text)
        return
    progress(value, message)

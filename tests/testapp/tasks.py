"""Task functions the test suite enqueues; each records its executions in a side table."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from workers.context import current

from .models import Execution


def _record(key: str) -> None:
    ctx = current()
    Execution.objects.create(key=key, task_id=ctx.task_id, attempt=ctx.attempt,
                             pid=os.getpid(), at=time.time())


def noop() -> None:
    return None


def record(key: str) -> str:
    _record(key)
    return key


def add(a: int, b: int) -> int:
    return a + b


def sleep_then_record(key: str, seconds: float) -> str:
    _record(f"{key}:start")
    time.sleep(seconds)
    _record(key)
    return key


def wait_for_file(path: str, key: str, timeout: float = 60.0) -> str:
    """Run until the test creates ``path``: a task that ends exactly when the test says."""
    _record(f"{key}:start")
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.05)
    _record(key)
    return key


def fail_after_file(path: str) -> None:
    """Fail once the test creates ``path``: a failure at the moment the test chooses."""
    _record("fail:start")
    wait_for_path(path)
    raise ValueError("failed on cue")


def wait_for_path(path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not Path(path).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.05)


def write_output(relative: str, text: str) -> str:
    """Write a file into this run task's own work directory."""
    from workers.runs import workdir

    path = workdir.here() / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def fail_always(message: str) -> None:
    _record("fail")
    raise ValueError(message)


def kill_my_worker() -> None:
    """Take the worker process down (SIGKILL of the supervisor)."""
    _record("kill")
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(30)


def spawn_sleeper(pid_file: str, seconds: float) -> None:
    """Start a grandchild process and wait: stopping the task must stop it too."""
    child = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])
    written = Path(f"{pid_file}.part")
    written.write_text(str(child.pid))
    written.replace(pid_file)  # whole or not there: a reader never sees it half written
    _record("spawned")
    child.wait()


def report_progress(steps: int, pause: float) -> int:
    ctx = current()
    for step in range(steps):
        time.sleep(pause)
        ctx.progress((step + 1) / steps, f"step {step + 1} of {steps}")
    return steps


def not_json() -> object:
    return object()


async def async_add(a: int, b: int) -> int:
    return a + b


NOT_A_FUNCTION = 42


def crash_process() -> None:
    """Die the way a segfault or the OOM killer would end a task's process."""
    _record("crash")
    os.kill(os.getpid(), signal.SIGKILL)


def sleep_then_return(key: str, seconds: float) -> str:
    """Record the start, then compute without touching the database."""
    _record(f"{key}:start")
    time.sleep(seconds)
    return f"{key} done"


def step(key: str, act: str = "") -> str:
    """One of many short tasks of one function; on cue (``act``) it takes its worker down
    (``kill-worker``), kills its own process (``crash``) or runs until a file appears
    (``wait:<path>``): what tasks claimed together meet."""
    _record(key)
    if act == "kill-worker":
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(30)
    elif act == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    elif act.startswith("wait:"):
        wait_for_path(act.removeprefix("wait:"))
    return key

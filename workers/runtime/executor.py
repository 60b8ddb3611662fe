"""The executor: a child process that runs task code, so that it can be killed.

The supervisor forks it once (it has no threads, so forking is safe) and replaces it only
after killing it for a timeout, cancel or abort. Messages travel over a socket pair:
supervisor -> executor ``{"task": ...}``, or ``{"tasks": [...]}`` for short tasks claimed
together (``runtime.bundle``); executor -> supervisor ``progress``, ``log`` (``djangolog``),
and a reply after each task.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import inspect
import logging
import os
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection, Pipe
from typing import Any

from django.db import close_old_connections, connections

from .. import conf, context, storable
from ..backends import execution
from ..pool import processes
from ..spec import resolve
from . import djangolog, memory
from .bundle import Gate

logger = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1
PEAK_SLACK = 1024 * 1024  # a task that raised the high-water mark less leaves it unreset
_inherited: list[Any] = []  # the supervisor's DB connections: kept, never used, never closed


@dataclass
class Executor:
    pid: int
    conn: Connection
    output: int  # read end of the executor's stdout/stderr
    gate: Gate  # which tasks of a bundle began

    def fileno(self) -> int:
        return self.conn.fileno()


def start() -> Executor:
    """Fork the executor; its output goes to a pipe the supervisor logs from."""
    parent, child = Pipe(duplex=True)
    gate = Gate()
    out_r, out_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            os.close(out_r)
            parent.close()
            _become_executor(out_w)
            _serve(child, gate)
        except BaseException:  # noqa: BLE001 - the child must never return into the parent's code
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(out_w)
    child.close()
    with contextlib.suppress(OSError):  # also done by the child: whichever runs first
        os.setpgid(pid, pid)
    os.set_blocking(out_r, False)
    return Executor(pid=pid, conn=parent, output=out_r, gate=gate)


def _become_executor(out_w: int) -> None:
    # What the supervisor built is never garbage here: a collection that walked it would
    # write to (and so copy) every page of it, most of a fresh executor's first task.
    gc.freeze()
    parent_pid = os.getppid()
    _die_with_parent(parent_pid)
    # Lead a process group of our own: the sentinel ends the task and whatever it started
    # with one killpg, without touching the supervisor.
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    signal.set_wakeup_fd(-1)
    # A group-wide SIGTERM (systemd, a terminal) is for the supervisor to decide on; a
    # Python-level handler, unlike SIG_IGN, is reset by exec for programs a task starts.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)
    os.close(out_w)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    _forget_connections()
    _log_to_stderr()


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def _forget_connections() -> None:
    """Open fresh DB connections here; the inherited ones belong to the supervisor."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is not None:
            _inherited.append(conn.connection)
            conn.connection = None


def _log_to_stderr() -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)


@dataclass(slots=True)
class _Between:
    """What the executor keeps between tasks: its size at start (what it may grow from),
    whether the last task raised its high-water mark, and the functions whose last run
    here was short."""

    base_rss: int
    raised: bool = True
    short: set[str] = field(default_factory=set)


# A task of a function whose last run in this executor took less than this: Django's line
# that starts its attempt rides in the reply with the others, instead of a message of its
# own, which woke the supervisor once more for every short @task.
SHORT_TASK = 0.05


def _serve(conn: Connection, gate: Gate) -> None:
    djangolog.install(conn)
    state = _Between(base_rss=memory.own_rss() or 0)
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message.get("stop"):
            return
        if "tasks" in message:
            _run_bundle(conn, message["tasks"], state, gate)
        else:
            conn.send(_run(conn, message, state))


def _run_bundle(conn: Connection, tasks: list[dict[str, Any]], state: _Between,
                gate: Gate) -> None:
    """Run a bundle's tasks back to back, each held one once the gate lets it begin."""
    for index, task in enumerate(tasks):
        if index and not gate.begin(index):
            return
        if index:  # its row's moments are this attempt's, as if claimed now
            now = datetime.now(UTC).isoformat()
            row = task["row"]
            row["last_attempted_at"], row["started_at"] = now, row["started_at"] or now
        conn.send(_run(conn, {"task": task}, state))


def _size_after(base_rss: int, peak: int) -> dict[str, int | None]:
    """What this process holds now that the task is done, against what it may keep; the
    supervisor replaces an executor that kept more. Its size now is never above its peak,
    so it is read (and garbage collected first) only when the peak passed the ceiling."""
    ceiling = memory.executor_ceiling(base_rss, conf.get())
    rss = None
    if peak > ceiling:
        rss = memory.own_rss()
        if rss is not None and rss > ceiling:
            gc.collect()
            rss = memory.own_rss()
    return {"rss_bytes": rss, "ceiling_bytes": ceiling}


RUSAGE_SCALE = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes there, KiB here


def _own_peak() -> int:
    """This process's high-water mark (Linux: the one clear_refs resets; a system call,
    where /proc/self/status costs thirty times as much)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RUSAGE_SCALE


def _reset_peak(state: _Between) -> int:
    """Start this task's peak at the process's size now (Linux: clear_refs 5) when the last
    task raised the mark; return the mark the task starts from. A task that did not raise
    it leaves it where a reset put it, so small tasks pay no walk of the page tables."""
    if state.raised:
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    return _own_peak()


def _children_peak() -> int:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * RUSAGE_SCALE


def _call(func_path: str, args: list[Any], kwargs: dict[str, Any],
          row: dict[str, Any] | None = None) -> Any:
    """``row``: what the claim read of the task's row, for a Django @task's TaskResult."""
    func = resolve(func_path)
    django_task = execution.django_task(func_path)
    if django_task is not None:
        return execution.run(django_task, args, kwargs, _invoke, claimed=row)
    return _invoke(func, args, kwargs)


def _invoke(func: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]) -> Any:
    """Call the task's function (a coroutine function in its own event loop); the result
    must be storable JSON."""
    try:
        if inspect.iscoroutinefunction(func):
            value = asyncio.run(func(*args, **kwargs))
        else:
            value = func(*args, **kwargs)
    finally:
        djangolog.relay.holding = True  # Django's "finished" line rides in the reply
    storable.dumps(value)  # refused here, with a traceback, rather than after it returns
    return value


def _run(conn: Connection, message: dict[str, Any], state: _Between) -> dict[str, Any]:
    task = message["task"]

    def report(fraction: float | None, text: str) -> None:
        conn.send({"progress": fraction, "message": text})

    close_old_connections()  # a connection broken since the last task is replaced first
    context.activate(context.TaskContext(task["id"], task["attempt"], task["worker_id"], report))
    before = _reset_peak(state)
    children_before = _children_peak()
    reply: dict[str, Any]
    func_path = task["func_path"]
    djangolog.relay.holding = func_path in state.short
    began_at = time.time()
    began = time.monotonic()
    try:
        value = _call(func_path, task["args"], task["kwargs"], task.get("row"))
        reply = {"ok": True, "value": value}
    except BaseException as exc:  # noqa: BLE001 - any failure of task code is recorded
        reply = _failure(exc)
        connections.close_all()
    finally:
        context.activate(None)
        sys.stdout.flush()
        sys.stderr.flush()
    seconds = time.monotonic() - began
    if seconds < SHORT_TASK:
        state.short.add(func_path)
    else:
        state.short.discard(func_path)
    children_after = _children_peak()
    peak = _own_peak()
    state.raised = peak > before + PEAK_SLACK
    reply["peak_rss_bytes"] = max(peak, children_after if children_after > children_before else 0)
    reply.update(_size_after(state.base_rss, peak))
    reply["log"] = djangolog.relay.take()
    reply["began_at"], reply["seconds"] = began_at, seconds
    return reply


def _failure(exc: BaseException) -> dict[str, Any]:
    kind = type(exc)
    name = f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(exc, storable.UnstorableResult):
        summary = f"{kind.__name__}: {exc}"
    elif isinstance(exc, (TypeError, ValueError)) and "JSON" in str(exc):
        summary = f"{kind.__name__}: return value is not JSON-serialisable: {exc}"
    else:
        summary = f"{kind.__name__}: {exc}"
    return {
        "ok": False,
        "error": summary,
        "exception_class": name,
        "traceback": "".join(traceback.format_exception(exc)),
    }


def kill(pid: int) -> None:
    """Kill the executor and every process it started (the executor is reaped by ``reap``)."""
    descendants = processes.descendants(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    processes.stop(descendants, grace=0.3)


def reap(pid: int, timeout: float) -> int | None:
    """Wait for the executor to exit (killing it after ``timeout``); no zombie is left."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done:
            return status
        if time.monotonic() >= deadline:
            kill(pid)
            deadline = time.monotonic() + 5.0
        time.sleep(0.005)


def describe(status: int | None) -> str:
    if status is None:
        return "exit status unknown"
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        name = signal.Signals(number).name
        hint = " (out of memory?)" if number == signal.SIGKILL else ""
        return f"killed by signal {number} ({name}){hint}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"

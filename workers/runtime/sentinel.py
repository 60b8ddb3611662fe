"""The fail-safe that stops a task when its worker cannot: a tiny process of its own.

The supervisor arms it with the executor's process group and a deadline on the system's
monotonic clock (shared by every process of the machine): the moment before which the
task must stop, because its lease may end soon after. Each claim and renewal moves the
deadline. If the deadline passes, or the supervisor's end of the pipe closes (it died),
the sentinel kills the executor's process group. It runs no worker code: a supervisor that
is frozen (SIGSTOP, swapped out) or stuck cannot keep a task running past its lease.

Arming costs no system call: the deadline lives in a small shared mapping that both
processes see, and the sentinel reads it only when the deadline it knows comes due. A busy
worker arms it once per task without waking it.

It is forked from the supervisor, in a session of its own (a signal to the worker's group
does not reach it), and runs only this module's loop: the standard library's select,
struct and os calls, with the garbage collector off. It shares the supervisor's pages
rather than loading an interpreter of its own, which cost a worker 9 MB of PSS. It shows
as ``sentinel`` in ``ps -o comm``, with the supervisor's command line.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import mmap
import os
import select
import signal
import struct
import sys
import time
import warnings
from dataclasses import dataclass

# seq (odd while written), process group (0: disarmed), deadline; read as a seqlock
LAYOUT = struct.Struct("<qqd")
NAME = b"sentinel"  # its name in ps -o comm (the kernel keeps 15 bytes)
PR_SET_NAME = 15
CLOSE_WAIT = 2.0  # seconds close() waits for it to exit before killing it


@dataclass
class Sentinel:
    """The supervisor's handle on its sentinel process."""

    pid: int
    pipe: int  # the write end: its closing (the supervisor's exit) tells the sentinel
    shared: mmap.mmap
    seq: int = 0
    armed: bool = False
    returncode: int | None = None  # once it has exited and been reaped

    @classmethod
    def start(cls) -> Sentinel:
        shared = mmap.mmap(-1, LAYOUT.size)  # anonymous and shared: the child sees it too
        LAYOUT.pack_into(shared, 0, 0, 0, 0.0)
        read_end, write_end = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        with warnings.catch_warnings():
            # Forking a process with threads (a test runner's) is safe here: the child
            # takes no lock another thread could hold, and never returns into their code.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                _become_sentinel(read_end)
                serve(shared, read_end)
                code = 0
            finally:
                os._exit(code)
        os.close(read_end)
        return cls(pid, write_end, shared)

    def arm(self, pgid: int, deadline: float) -> None:
        self._write(pgid, deadline)
        if not self.armed:
            self.armed = True
            self._nudge()  # a disarmed sentinel waits on its pipe: tell it to look

    def disarm(self) -> None:
        self._write(0, 0.0)
        self.armed = False

    def alive(self) -> bool:
        if self.returncode is not None:
            return False
        try:
            done, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped already, with the worker's other orphans
            self.returncode = -1
            return False
        if done:
            self.returncode = os.waitstatus_to_exitcode(status)
            return False
        return True

    def close(self) -> None:
        """Disarm and let it exit (it exits when its pipe closes). Idempotent."""
        if self.shared.closed:
            return
        self.disarm()
        with contextlib.suppress(OSError):
            os.close(self.pipe)
        if self.alive():
            from .executor import reap  # the executor's: wait, then kill, no zombie left

            status = reap(self.pid, timeout=CLOSE_WAIT)
            self.returncode = -1 if status is None else os.waitstatus_to_exitcode(status)
        self.shared.close()

    def _write(self, pgid: int, deadline: float) -> None:
        self.seq += 1
        LAYOUT.pack_into(self.shared, 0, 2 * self.seq - 1, pgid, deadline)
        LAYOUT.pack_into(self.shared, 0, 2 * self.seq, pgid, deadline)

    def _nudge(self) -> None:
        if not self.alive():
            raise BrokenPipeError("the sentinel has exited")
        os.write(self.pipe, b"\n")


def _become_sentinel(pipe: int) -> None:
    """In the child: a session of its own, default signals, no descriptor of the
    supervisor's but the pipe and the standard streams, no garbage collection (a collection
    would write to every page of the heap it shares with the supervisor)."""
    gc.disable()
    os.setsid()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for number in (signal.SIGTERM, signal.SIGCHLD):
        signal.signal(number, signal.SIG_DFL)
    os.closerange(3, pipe)
    os.closerange(pipe + 1, os.sysconf("SC_OPEN_MAX"))
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, ctypes.c_char_p(NAME), 0, 0, 0)


def read(shared: mmap.mmap) -> tuple[int, float]:
    """The armed process group (0: none) and its deadline, read consistently."""
    while True:
        before, pgid, deadline = LAYOUT.unpack_from(shared, 0)
        after, _, _ = LAYOUT.unpack_from(shared, 0)
        if before == after and before % 2 == 0:
            return pgid, deadline


def _kill(pgid: int, why: str) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    # os.write, not sys.stderr: the buffered stream's lock may be held by a thread that
    # was running in the supervisor when it forked this process
    with contextlib.suppress(OSError):
        os.write(2, f"crucible sentinel: killed process group {pgid}: {why}\n".encode())


def serve(shared: mmap.mmap, fd: int) -> None:
    """Kill the armed group once its deadline has passed, or when the supervisor is gone."""
    spent: tuple[int, float] | None = None  # what was killed: never again until re-armed
    while True:
        pgid, deadline = read(shared)
        armed = pgid != 0 and (pgid, deadline) != spent
        timeout = max(0.0, deadline - time.monotonic()) if armed else None
        ready, _, _ = select.select([fd], [], [], timeout)
        if ready and not os.read(fd, 4096):  # the supervisor is gone
            pgid, deadline = read(shared)
            if pgid != 0 and (pgid, deadline) != spent:
                _kill(pgid, "its worker is gone")
            return
        pgid, deadline = read(shared)  # a renewal made in time moved it: look again
        if pgid != 0 and (pgid, deadline) != spent and time.monotonic() >= deadline:
            _kill(pgid, "the lease could not be renewed in time")
            spent = (pgid, deadline)

"""The fail-safe that stops a task when its worker cannot: a tiny process of its own.

The supervisor arms it with the executor's process group and a deadline on the system's
monotonic clock (shared by every process of the machine): the moment before which the
task must stop, because its lease may end soon after. Each claim and renewal moves the
deadline. If the deadline passes, or the supervisor's end of the pipe closes (it died),
the sentinel kills the executor's process group. It runs no worker code: a supervisor that
is frozen (SIGSTOP, swapped out) or stuck cannot keep a task running past its lease.

Arming costs no system call: the deadline lives in a small shared file mapped by both
processes, and the sentinel reads it only when the deadline it knows comes due. A busy
worker arms it once per task without waking it.

Run as ``python -I -S sentinel.py FD``: it imports only the standard library.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

# seq (odd while written), process group (0: disarmed), deadline; read as a seqlock
LAYOUT = struct.Struct("<qqd")


def _map(fd: int) -> mmap.mmap:
    return mmap.mmap(fd, LAYOUT.size)


@dataclass
class Sentinel:
    """The supervisor's handle on its sentinel process."""

    proc: subprocess.Popen[bytes]
    shared: mmap.mmap
    seq: int = 0
    armed: bool = False

    @classmethod
    def start(cls) -> Sentinel:
        fd, path = tempfile.mkstemp(prefix="crucible-sentinel-")
        try:
            os.unlink(path)  # shared through the descriptor: nothing else needs the name
            os.write(fd, LAYOUT.pack(0, 0, 0.0))
            shared = _map(fd)
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", __file__, str(fd)],
                stdin=subprocess.PIPE,
                start_new_session=True,  # a signal to the worker's group does not reach it
                pass_fds=(fd,),
            )
        finally:
            os.close(fd)
        return cls(proc, shared)

    def arm(self, pgid: int, deadline: float) -> None:
        self._write(pgid, deadline)
        if not self.armed:
            self.armed = True
            self._nudge()  # a disarmed sentinel waits on its pipe: tell it to look

    def disarm(self) -> None:
        self._write(0, 0.0)
        self.armed = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """Disarm and let it exit (it exits when its pipe closes). Idempotent."""
        if self.shared.closed:
            return
        self.disarm()
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.shared.close()

    def _write(self, pgid: int, deadline: float) -> None:
        self.seq += 1
        LAYOUT.pack_into(self.shared, 0, 2 * self.seq - 1, pgid, deadline)
        LAYOUT.pack_into(self.shared, 0, 2 * self.seq, pgid, deadline)

    def _nudge(self) -> None:
        if not self.alive():
            raise BrokenPipeError("the sentinel has exited")
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"\n")
        self.proc.stdin.flush()


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
    sys.stderr.write(f"crucible sentinel: killed process group {pgid}: {why}\n")


def serve(shared: mmap.mmap, fd: int = 0) -> None:
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


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(_map(int(sys.argv[1])))

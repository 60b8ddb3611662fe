"""The fail-safe that stops a task when its worker cannot: a tiny process of its own.

The supervisor arms it with the executor's process group and a deadline on the system's
monotonic clock (shared by every process of the machine): the moment before which the
task must stop, because its lease may end soon after. Each renewal re-arms it. If the
deadline passes, or the supervisor's end of the pipe closes (it died), the sentinel kills
the executor's process group. It runs no worker code: a supervisor that is frozen
(SIGSTOP, swapped out) or stuck cannot keep a task running past its lease.

Run as ``python -I -S sentinel.py``: it imports only the standard library.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

Armed = tuple[int, float]  # (process group, monotonic deadline)


@dataclass
class Sentinel:
    """The supervisor's handle on its sentinel process."""

    proc: subprocess.Popen[bytes]

    @classmethod
    def start(cls) -> Sentinel:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", __file__],
            stdin=subprocess.PIPE,
            start_new_session=True,  # a signal to the worker's group does not reach it
            close_fds=True,
        )
        return cls(proc)

    def arm(self, pgid: int, deadline: float) -> None:
        self._send(f"arm {pgid} {deadline!r}\n")

    def disarm(self) -> None:
        self._send("disarm\n")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        """Disarm and let it exit (it exits when its pipe closes)."""
        if self.alive():
            self.disarm()
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode())
        self.proc.stdin.flush()


def _kill(armed: Armed, why: str) -> None:
    pgid, _ = armed
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    sys.stderr.write(f"crucible sentinel: killed process group {pgid}: {why}\n")


def _apply(line: bytes, armed: Armed | None) -> Armed | None:
    parts = line.split()
    if parts[:1] == [b"arm"] and len(parts) == 3:
        return int(parts[1]), float(parts[2])
    if parts[:1] == [b"disarm"]:
        return None
    return armed


def serve(fd: int = 0) -> None:
    """Wait for orders on ``fd``; kill the armed group at its deadline or when orphaned."""
    armed: Armed | None = None
    pending = b""
    while True:
        timeout = None if armed is None else max(0.0, armed[1] - time.monotonic())
        ready, _, _ = select.select([fd], [], [], timeout)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:  # the supervisor is gone: nobody can record or stop the task
                if armed is not None:
                    _kill(armed, "its worker is gone")
                return
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                armed = _apply(line, armed)  # a renewal sent in time wins, even if read late
        if armed is not None and time.monotonic() >= armed[1]:
            _kill(armed, "the lease could not be renewed in time")
            armed = None


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve()

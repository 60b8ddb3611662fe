"""A threaded loopback TCP proxy that tests and benchmarks control: cut, hang, refuse, count.

It forwards bytes both ways unchanged, and reads the client's side as the PostgreSQL
frontend protocol to count messages by type letter (``Q`` simple query, ``P`` parse,
``E`` execute, ...). It serves loopback only: it is a test tool, not a network device.
"""

from __future__ import annotations

import contextlib
import ipaddress
import select
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable
from types import TracebackType
from typing import Self

BUFFER = 65536
# Untyped packets a client may send before its startup message; the startup itself is
# protocol 3.x (major 3 in the high 16 bits).
SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102
STARTUP_MAJOR = 3
MAX_UNTYPED = 10_000  # a startup packet is small; anything larger is TLS or not PostgreSQL


class FrontendCounter:
    """Parse one client->server byte stream incrementally; count typed messages."""

    def __init__(self, counts: Counter[str], lock: threading.Lock) -> None:
        self.counts, self.lock = counts, lock
        self.header = b""
        self.skip = 0  # body bytes of the current message still to pass
        self.untyped = True  # before the startup message, packets carry no type letter
        self.opaque = False  # encrypted or unknown: stop reading

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.opaque:
            if self.skip:
                step = min(self.skip, len(view))
                self.skip -= step
                view = view[step:]
                continue
            need = 8 if self.untyped else 5
            take = need - len(self.header)
            self.header += bytes(view[:take])
            view = view[take:]
            if len(self.header) == need:
                self._message(self.header)
                self.header = b""

    def _message(self, header: bytes) -> None:
        if self.untyped:
            length, code = struct.unpack("!ii", header)
            if not 8 <= length <= MAX_UNTYPED:
                self.opaque = True
                return
            if code >> 16 == STARTUP_MAJOR:
                self.untyped = False
            elif code not in {SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST}:
                self.opaque = True
            self.skip = length - 8
            return
        kind, length = chr(header[0]), struct.unpack("!i", header[1:])[0]
        if length < 4:
            self.opaque = True
            return
        with self.lock:
            self.counts[kind] += 1
        self.skip = length - 4


class _Link:
    """One client connection and, once forwarded, its upstream socket."""

    def __init__(self, client: socket.socket) -> None:
        self.client = client
        self.upstream: socket.socket | None = None
        self.closed = threading.Event()

    def sockets(self) -> list[socket.socket]:
        return [s for s in (self.client, self.upstream) if s is not None]

    def shut(self) -> None:
        """Wake the pump (if any) and end both sides; the pump closes the sockets."""
        self.closed.set()
        for sock in self.sockets():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closed.set()
        for sock in self.sockets():
            sock.close()


class TcpProxy:
    """Forward ``listen_host:port`` to ``target_host:target_port``, under the test's control."""

    def __init__(self, target_host: str, target_port: int,
                 listen_host: str = "127.0.0.1") -> None:
        for host in (target_host, listen_host):
            if not _is_loopback(host):
                raise ValueError(f"TcpProxy serves loopback only, not {host!r}")
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = 0
        self._mode = ""  # "", "hang" or "refuse"
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._threads: list[threading.Thread] = []
        self._counts: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._refusing = False  # applied by the accept thread, which owns the listener
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopped = threading.Event()
        self._started = False

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        if self._started:
            raise RuntimeError("TcpProxy already started")
        self._started = True
        self._listener = self._bind(0)
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self._spawn(self._accept_loop, "tcp-proxy-accept")

    def stop(self) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._wake()
        self.cut()
        for thread in list(self._threads):
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- faults -----------------------------------------------------------------------

    def cut(self) -> None:
        with self._lock:
            links = list(self._links)
        for link in links:
            link.shut()
            if link.upstream is None:  # held by "hang": no pump owns it
                link.close()

    def block(self, mode: str = "hang") -> None:
        """Cut every connection; then new ones hang ("hang") or are refused ("refuse")."""
        if mode not in {"hang", "refuse"}:
            raise ValueError(f"mode must be 'hang' or 'refuse', not {mode!r}")
        self._set_mode(mode)
        self.cut()

    def unblock(self) -> None:
        """Forward new connections again; connections held while hanging are closed."""
        self._set_mode("")
        self.cut_held()

    def cut_held(self) -> None:
        with self._lock:
            held = [link for link in self._links if link.upstream is None]
        for link in held:
            link.shut()
            link.close()

    # -- counts -----------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        with self._count_lock:
            return dict(self._counts)

    def reset_counts(self) -> None:
        with self._count_lock:
            self._counts.clear()

    # -- internals --------------------------------------------------------------------

    def _bind(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.listen_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.listen_host, port))
        return sock

    def _spawn(self, target: Callable[..., None], name: str, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _set_mode(self, mode: str) -> None:
        """Change the mode and wait until the accept thread has applied it to the listener."""
        with self._changed:
            self._mode = mode
            self._wake()
            if self._started and not self._stopped.is_set():
                applied = self._changed.wait_for(
                    lambda: self._refusing == (self._mode == "refuse"), timeout=5)
                if not applied:
                    raise RuntimeError("the proxy's accept thread did not apply the mode")

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            self._apply_mode()
            listener = None if self._refusing else self._listener
            watched = [self._wake_r] + ([listener] if listener is not None else [])
            ready = _wait_readable(watched)
            if self._wake_r in ready:
                with contextlib.suppress(OSError):
                    self._wake_r.recv(BUFFER)
                continue
            if listener is not None:
                with contextlib.suppress(OSError):
                    self._admit(listener.accept()[0])

    def _apply_mode(self) -> None:
        with self._changed:
            refuse = self._mode == "refuse"
            if refuse != self._refusing and self._listener is not None:
                if refuse:
                    # Bound but not listening: the kernel answers a connect with RST
                    # (refused) and the port stays ours for unblock().
                    self._listener.close()
                    self._listener = self._bind(self.port)
                else:
                    self._listener.listen(128)
                self._refusing = refuse
            self._changed.notify_all()

    def _admit(self, client: socket.socket) -> None:
        link = _Link(client)
        with self._lock:
            if self._stopped.is_set():
                client.close()
                return
            hang = self._mode == "hang"
            self._links.add(link)
        if hang:
            return  # accepted, never forwarded: the client waits until cut or unblock
        self._spawn(self._forward, "tcp-proxy-link", link)

    def _forward(self, link: _Link) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            link.close()
            self._forget(link)
            return
        upstream.settimeout(None)
        with self._lock:
            link.upstream = upstream
            blocked = bool(self._mode)
        if blocked or link.closed.is_set():  # blocked or cut while we were connecting
            link.close()
            self._forget(link)
            return
        self._pump(link, FrontendCounter(self._counts, self._count_lock))

    def _pump(self, link: _Link, counter: FrontendCounter) -> None:
        client, upstream = link.client, link.upstream
        assert upstream is not None
        try:
            while not link.closed.is_set():
                for src in _wait_readable([client, upstream]):
                    data = src.recv(BUFFER)
                    if not data:
                        return
                    if src is client:
                        counter.feed(data)
                        upstream.sendall(data)
                    else:
                        client.sendall(data)
        except (OSError, ValueError):
            return  # a side went away or was cut
        finally:
            link.shut()
            link.close()
            self._forget(link)

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)


def _wait_readable(socks: list[socket.socket]) -> list[socket.socket]:
    """Block until some of ``socks`` are readable, closed or failed (poll: no fd limit)."""
    poller = select.poll()
    by_fd = {sock.fileno(): sock for sock in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    return [by_fd[fd] for fd, _ in poller.poll()]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

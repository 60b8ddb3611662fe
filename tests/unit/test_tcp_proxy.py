"""The test proxy forwards, cuts, hangs, refuses and counts PostgreSQL messages as promised."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest
from django.db import connection

from tests.conftest import wait_for
from tests.tcp_proxy import FrontendCounter, TcpProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def echo() -> Iterator[int]:
    server = _EchoServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def proxy(echo: int) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", echo) as running:
        yield running


def _client(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(5)
    return sock


def _echoes(sock: socket.socket, data: bytes = b"ping") -> bool:
    sock.sendall(data)
    return sock.recv(100) == data


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(100) == b""
    except ConnectionResetError:
        return True


def test_forwards_both_ways_on_an_ephemeral_port(proxy, echo):
    assert proxy.port not in {0, echo}
    with _client(proxy.port) as sock:
        assert _echoes(sock, b"hello")
        assert _echoes(sock, b"again")


def test_forwards_large_payloads_intact(proxy):
    payload = bytes(range(256)) * 2000
    with _client(proxy.port) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        received = b""
        while len(received) < len(payload):
            received += sock.recv(65536)
        sender.join()
    assert received == payload


def test_cut_closes_open_connections_and_new_ones_still_work(proxy):
    with _client(proxy.port) as first, _client(proxy.port) as second:
        assert _echoes(first) and _echoes(second)
        proxy.cut()
        assert _closed_by_peer(first)
        assert _closed_by_peer(second)
    with _client(proxy.port) as third:
        assert _echoes(third)


def test_hang_accepts_but_never_forwards_until_unblocked(proxy):
    with _client(proxy.port) as before:
        assert _echoes(before)
        proxy.block("hang")
        assert _closed_by_peer(before)
    with _client(proxy.port) as hung:
        hung.settimeout(0.3)
        hung.sendall(b"anyone?")
        with pytest.raises(TimeoutError):
            hung.recv(100)
        proxy.unblock()
        hung.settimeout(5)
        assert _closed_by_peer(hung), "a connection held while hanging is closed on unblock"
    with _client(proxy.port) as after:
        assert _echoes(after)


def test_refuse_refuses_on_the_same_port_until_unblocked(proxy):
    port = proxy.port
    with _client(port) as before:
        proxy.block("refuse")
        assert _closed_by_peer(before)
    with pytest.raises(ConnectionRefusedError):
        _client(port)
    proxy.unblock()
    assert proxy.port == port
    with _client(port) as after:
        assert _echoes(after)


def test_block_rejects_an_unknown_mode(proxy):
    with pytest.raises(ValueError, match="'hang' or 'refuse'"):
        proxy.block("drop")


def test_stop_closes_everything_and_is_idempotent(echo):
    proxy = TcpProxy("127.0.0.1", echo)
    proxy.start()
    sock = _client(proxy.port)
    assert _echoes(sock)
    proxy.stop()
    proxy.stop()
    assert _closed_by_peer(sock)
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        _client(proxy.port)
    assert wait_for(lambda: not any(t.name.startswith("tcp-proxy") and t.is_alive()
                                    for t in threading.enumerate()))


def test_only_loopback_is_served():
    with pytest.raises(ValueError, match="loopback"):
        TcpProxy("192.0.2.1", 5432)
    with pytest.raises(ValueError, match="loopback"):
        TcpProxy("127.0.0.1", 5432, listen_host="0.0.0.0")


def _message(kind: bytes, body: bytes = b"") -> bytes:
    return kind + (len(body) + 4).to_bytes(4, "big") + body


def test_counter_skips_untyped_packets_and_reads_split_messages():
    counts, lock = Counter[str](), threading.Lock()
    counter = FrontendCounter(counts, lock)
    ssl_request = (8).to_bytes(4, "big") + (80877103).to_bytes(4, "big")
    startup = b"user\x00me\x00\x00"
    startup = (len(startup) + 8).to_bytes(4, "big") + (196608).to_bytes(4, "big") + startup
    stream = (ssl_request + startup + _message(b"Q", b"SELECT 1\x00")
              + _message(b"P", b"\x00" * 300) + _message(b"B") + _message(b"E", b"\x00" * 5)
              + _message(b"S"))
    for index in range(len(stream)):  # one byte at a time: every split point
        counter.feed(stream[index:index + 1])
    assert dict(counts) == {"Q": 1, "P": 1, "B": 1, "E": 1, "S": 1}


def test_counter_stops_reading_an_encrypted_stream():
    counts, lock = Counter[str](), threading.Lock()
    counter = FrontendCounter(counts, lock)
    counter.feed(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"Q" * 100)
    assert dict(counts) == {}


@pytest.mark.skipif(
    "connection.vendor != 'postgresql'",
    reason="counts PostgreSQL protocol messages; runs in the PostgreSQL pass",
)
def test_counts_postgresql_frontend_messages_by_type():
    db = connection.settings_dict
    pg_proxy = TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
    with pg_proxy, psycopg.connect(host="127.0.0.1", port=pg_proxy.port, dbname="postgres",
                                   user=db["USER"] or "postgres", autocommit=True) as conn:
        pg_proxy.reset_counts()
        conn.pgconn.exec_(b"SELECT 1")  # simple query protocol
        assert pg_proxy.counts() == {"Q": 1}
        conn.execute("SELECT %s::int", [1])  # extended protocol
        assert pg_proxy.counts() == {"Q": 1, "P": 1, "B": 1, "D": 1, "E": 1, "S": 1}
        pg_proxy.reset_counts()
        assert pg_proxy.counts() == {}

"""Connections that fail fast: a timeout to connect, keepalives, and a LISTEN connection that
is made like Django's and can be probed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from django.db import OperationalError, connection, connections

from tests.conftest import wait_for
from tests.tcp_proxy import TcpProxy
from workers.queue import doorbell
from workers.runtime import wake

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.integration,
    pytest.mark.skipif(
        "connection.vendor != 'postgresql'",
        reason="SQLite has no server connection; connection timeouts run in the PostgreSQL pass",
    ),
]
SLACK = 3.0  # seconds beyond the timeout that a loaded machine may take


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    db = connection.settings_dict
    with TcpProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)) as running:
        yield running


@pytest.fixture
def through_proxy(proxy: TcpProxy, monkeypatch: pytest.MonkeyPatch) -> TcpProxy:
    """New connections made from Django's settings go through the proxy."""
    monkeypatch.setitem(connection.settings_dict, "HOST", "127.0.0.1")
    monkeypatch.setitem(connection.settings_dict, "PORT", proxy.port)
    return proxy


@pytest.fixture
def listener() -> Iterator[wake.Listener]:
    made = wake.Listener(doorbell.channels(["default"], 1))
    yield made
    made.close()


def _finishes_within(action: Callable[[], object], seconds: float) -> tuple[bool, float]:
    """Run ``action`` in a thread; whether it ended within ``seconds``, and how long it took.

    A thread, so that a connection attempt that would block forever fails the test instead.
    """
    took: list[float] = []

    def run() -> None:
        start = time.monotonic()
        try:
            action()
        finally:
            took.append(time.monotonic() - start)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), (took[0] if took else seconds)


def test_the_default_connection_has_a_connect_timeout_and_keepalives():
    options = connection.settings_dict["OPTIONS"]
    assert options["connect_timeout"] == 5
    assert (options["keepalives"], options["keepalives_idle"]) == (1, 10)
    assert (options["keepalives_interval"], options["keepalives_count"]) == (5, 3)


def test_the_listen_connection_is_made_with_djangos_options(listener, monkeypatch):
    options = {**connection.settings_dict["OPTIONS"], "application_name": "crucible-listen-test"}
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", options)
    assert listener.connect()
    assert listener.conn is not None

    with connection.cursor() as cursor:
        cursor.execute("SELECT application_name FROM pg_stat_activity WHERE pid = %s",
                       [listener.conn.info.backend_pid])
        assert cursor.fetchone() == ("crucible-listen-test",)
    params = listener.conn.info.get_parameters()
    assert (params["connect_timeout"], params["keepalives_idle"]) == ("5", "10")


def test_djangos_connection_to_a_hung_server_fails_within_the_connect_timeout(through_proxy):
    through_proxy.block("hang")
    fresh = connections.create_connection("default")
    errors: list[Exception] = []

    def connect() -> None:
        try:
            fresh.ensure_connection()
        except OperationalError as exc:
            errors.append(exc)

    timeout = connection.settings_dict["OPTIONS"]["connect_timeout"]
    ended, took = _finishes_within(connect, timeout + SLACK)
    fresh.close()
    assert ended, "the connection attempt was still blocked"
    assert errors, "the connection attempt failed"
    assert took >= timeout - 0.5


def test_the_listen_connection_to_a_hung_server_fails_within_the_connect_timeout(
    through_proxy, listener
):
    through_proxy.block("hang")
    connected: list[bool] = []
    timeout = connection.settings_dict["OPTIONS"]["connect_timeout"]
    ended, took = _finishes_within(lambda: connected.append(listener.connect()),
                                   timeout + SLACK)
    assert ended, "the LISTEN connection attempt was still blocked"
    assert connected == [False]
    assert listener.conn is None
    assert took >= timeout - 0.5


def test_a_probe_notices_a_cut_connection(through_proxy, listener):
    assert listener.connect()
    assert listener.probe()
    through_proxy.cut()
    assert not listener.probe()
    assert listener.conn is None
    assert listener.read() == []
    through_proxy.unblock()
    assert listener.connect(), "the worker can LISTEN again once the database is back"


def test_a_probe_gives_up_on_a_server_that_does_not_answer(listener):
    assert listener.connect()
    assert listener.conn is not None
    start = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            wake._ask(listener.conn.pgconn, b"SELECT pg_sleep(30)", timeout=0.5)
        assert time.monotonic() - start < 0.5 + SLACK
    finally:
        listener.conn.cancel_safe(timeout=5)  # the server would sleep on after we hang up


def test_a_wake_up_that_arrives_during_a_probe_is_read_afterwards(listener):
    assert listener.connect()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [doorbell.channel("q:default"), "q:default"])
    wait_for(lambda: _readable(listener))
    assert listener.probe()
    assert listener.read() == ["q:default"]


def test_an_enqueue_wakes_only_the_listeners_of_its_queue():
    here = wake.Listener(doorbell.channels(["default"], 1))
    elsewhere = wake.Listener(doorbell.channels(["other"], 2))
    try:
        assert here.connect() and elsewhere.connect()
        doorbell.notify("q:default")
        doorbell.notify("w:2")
        wait_for(lambda: _readable(here) and _readable(elsewhere))
        assert here.read() == ["q:default"]
        assert elsewhere.read() == ["w:2"]
    finally:
        here.close()
        elsewhere.close()


def test_a_listener_listens_on_channels_added_later_and_after_reconnecting():
    listener = wake.Listener(doorbell.channels([], 1))
    try:
        assert listener.connect()
        listener.add(doorbell.channels(["default"], 1))
        doorbell.notify("q:default")
        wait_for(lambda: _readable(listener))
        assert listener.read() == ["q:default"]

        listener.close()
        assert listener.connect()
        doorbell.notify("q:default")
        wait_for(lambda: _readable(listener))
        assert listener.read() == ["q:default"]
    finally:
        listener.close()


def test_a_wake_up_that_arrives_while_channels_are_added_is_kept():
    listener = wake.Listener(doorbell.channels([], 1))
    try:
        assert listener.connect()
        doorbell.notify("w:1")
        wait_for(lambda: _readable(listener))
        listener.add(doorbell.channels(["default"], 1))  # reads the socket
        assert listener.read() == ["w:1"]
    finally:
        listener.close()


def _readable(listener: wake.Listener) -> bool:
    import select

    return bool(select.select([listener.fileno()], [], [], 0)[0])

"""Slow clients cannot exhaust a local collector worker: idle timeout, request deadline, connection cap."""

from __future__ import annotations

import contextlib
import socket
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from shared.local.collector import CollectorServer

pytestmark = pytest.mark.integration
IDLE, DEADLINE, CAP = 1.0, 2.0, 2
MARGIN = 20.0
"""Seconds of slack over the design bounds above for a loaded 2-core machine (waits end on the event, not on it)."""


@pytest.fixture
def server() -> Iterator[CollectorServer]:
    handled: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        handled.append(event)
        return {"statusCode": 200, "body": "served"}

    running = CollectorServer(
        ("127.0.0.1", 0), handler, idle_timeout=IDLE, request_deadline=DEADLINE, max_connections=CAP
    )
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    yield running
    running.shutdown()
    running.server_close()


def _closed_by_server(connection: socket.socket, trickle: bool) -> bool:
    """Trickle header bytes (or stay silent) until the server closes the connection or `MARGIN` passes."""
    connection.settimeout(IDLE / 2)
    waited = 0.0
    while waited < MARGIN:
        try:
            if trickle:
                connection.sendall(b"X-Slow: 1\r\n")
            if connection.recv(1024) == b"":
                return True
        except TimeoutError:
            waited += IDLE / 2
        except OSError:  # reset by the server
            return True
    return False


def _slow_client(port: int) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port))
    connection.sendall(b"POST /v1/track HTTP/1.1\r\nHost: x\r\n")
    return connection


def test_a_silent_connection_is_closed_after_the_idle_timeout(server: CollectorServer):
    connection = socket.create_connection(("127.0.0.1", server.server_port))
    with connection:
        assert _closed_by_server(connection, trickle=False)


def test_a_client_trickling_its_headers_is_cut_at_the_request_deadline(server: CollectorServer):
    connection = _slow_client(server.server_port)
    with connection:
        assert _closed_by_server(connection, trickle=True)


def test_slow_clients_holding_every_slot_do_not_stop_a_normal_request_from_being_served(server: CollectorServer):
    # Given slowloris clients on every connection slot of the worker, trickling headers to dodge the idle timeout
    slow = [_slow_client(server.server_port) for _ in range(CAP + 2)]
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(IDLE / 4):
            for connection in slow:
                with contextlib.suppress(OSError):
                    connection.sendall(b"X-Slow: 1\r\n")

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        # When a normal client sends a request (it waits at most the deadline for a slot; MARGIN is slack)
        request = urllib.request.Request(f"http://127.0.0.1:{server.server_port}/v1/track", data=b"{}", method="POST")
        with urllib.request.urlopen(request, timeout=DEADLINE + MARGIN) as answer:
            # Then it is served
            assert (answer.status, answer.read()) == (200, b"served")
    finally:
        stop.set()
        trickler.join()
        for connection in slow:
            connection.close()


def test_a_client_gone_before_its_answer_leaves_no_traceback_but_a_server_error_does(server: CollectorServer, capsys):
    # A client that hung up (or was cut off) while its answer was written: nothing to report
    try:
        raise BrokenPipeError(32, "Broken pipe")
    except BrokenPipeError:
        server.handle_error(None, ("127.0.0.1", 1))
    assert capsys.readouterr().err == ""
    # Anything else is still printed
    try:
        raise ValueError("a bug")
    except ValueError:
        server.handle_error(None, ("127.0.0.1", 1))
    assert "ValueError: a bug" in capsys.readouterr().err

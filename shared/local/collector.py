"""A local collector worker: HTTP → API Gateway v2 event → the collect Lambda handler → HTTP.

`footfall serve` starts several of these on the same port (`SO_REUSEPORT`: the kernel spreads connections).
Each worker runs the handler for one request at a time, as a Lambda container does (Powertools' resolver
keeps the current event in a class attribute, so one process must not run two requests at once); network
I/O still overlaps, and the workers together keep both cores and the backend busy.

Slow clients cannot exhaust a worker: a connection silent for `IDLE_TIMEOUT` seconds is closed, one that has
not delivered its whole request (head and body) within `REQUEST_DEADLINE` seconds of starting it is cut by a
reaper (so trickling a byte at a time does not help), and at most `MAX_CONNECTIONS` connections are served at
once: further ones wait in the kernel's accept queue until a slot frees, which takes at most the deadline.

Run as `python -m shared.local.collector --port P` with the `FOOTFALL_*` settings in the environment.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading
import time
import uuid
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shared.domain.events import MAX_BATCH_BYTES
from shared.local.apigw import http_answer, http_api_event
from shared.local.children import die_with_parent
from shared.local.context import LocalContext

# Bodies over this are refused before they are read (the handler's own limit is 500 KB after decompression).
MAX_READ_BYTES = 2 * MAX_BATCH_BYTES
IDLE_TIMEOUT = 10.0
"""Seconds a connection may stay silent (keep-alive between requests included)."""
REQUEST_DEADLINE = 30.0
"""Seconds to deliver a whole request once its first byte is awaited (500 KB in 30 s is ~17 KB/s)."""
MAX_CONNECTIONS = 64
"""Connections (threads) served at once per worker."""


class CollectorServer(ThreadingHTTPServer):
    """HTTP server sharing its port with sibling workers, bounded against slow clients."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(
        self,
        address: tuple[str, int],
        handler: Any,
        *,
        idle_timeout: float = IDLE_TIMEOUT,
        request_deadline: float = REQUEST_DEADLINE,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        super().__init__(address, _RequestHandler)
        self.handler = handler
        self.handler_lock = threading.Lock()
        self.idle_timeout = idle_timeout
        self.request_deadline = request_deadline
        self.slots = threading.BoundedSemaphore(max_connections)
        self.deadlines: dict[socket.socket, float] = {}
        self.deadlines_lock = threading.Lock()
        self.reaping = threading.Event()
        threading.Thread(target=self._reap, name="collector-reaper", daemon=True).start()

    def process_request(self, request: Any, client_address: Any) -> None:
        self.slots.acquire()  # at the cap, wait here: the reaper frees slots held by slow clients
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.reading(request, False)
            self.slots.release()

    def reading(self, connection: socket.socket, started: bool) -> None:
        """A request starts (its deadline runs) or has been read (the handler's own time is not limited)."""
        with self.deadlines_lock:
            if started:
                self.deadlines[connection] = time.monotonic() + self.request_deadline
            else:
                self.deadlines.pop(connection, None)

    def _reap(self) -> None:
        while not self.reaping.wait(min(1.0, self.request_deadline / 4)):
            now = time.monotonic()
            with self.deadlines_lock:
                late = [connection for connection, deadline in self.deadlines.items() if deadline < now]
                for connection in late:
                    del self.deadlines[connection]
            for connection in late:
                with contextlib.suppress(OSError):  # wakes the thread blocked reading it
                    connection.shutdown(socket.SHUT_RDWR)

    def server_close(self) -> None:
        self.reaping.set()
        super().server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away before its answer (or was cut off by the reaper) is not a server error: no
        # traceback in the log for it. Anything else is printed as socketserver does.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        with self.handler_lock:
            context = LocalContext("footfall-collect", aws_request_id=event["requestContext"]["requestId"])
            answer: dict[str, Any] = self.handler(event, context)
            return answer


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CollectorServer

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout  # type: ignore[misc]  # per connection: StreamRequestHandler.setup applies it
        super().setup()

    def handle_one_request(self) -> None:
        self.server.reading(self.connection, True)
        super().handle_one_request()

    def _handle(self) -> None:
        path, _, query = self.path.partition("?")
        length_header = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._plain(411, b'{"success":false,"error":"send a Content-Length (chunked bodies are not accepted)"}')
            return
        length = int(length_header) if length_header and length_header.isdigit() else 0
        if length > MAX_READ_BYTES:
            self._plain(413, b'{"success":false,"error":"body is larger than 500 KB"}')
            return
        body = self.rfile.read(length) if length else b""
        self.server.reading(self.connection, False)
        if len(body) < length:  # the client went away or was cut off mid-body
            self.close_connection = True
            return
        event = http_api_event(
            self.command, path, headers=self.headers.items(), query=query, body=body, source_ip=self.client_address[0]
        )
        try:
            status, headers, data = http_answer(self.server.invoke(event))
        except Exception:  # the handler maps every error itself; this is the last line of defence
            status, headers, data = 500, [("Content-Type", "application/json")], b'{"success":false}'
        self.send_response(status)
        for name, value in headers:
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _plain(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    do_GET = do_POST = do_OPTIONS = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    """Serve the collect handler until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    die_with_parent()
    # Powertools warns on every invocation that publishes no metric; locally metrics are off anyway.
    warnings.filterwarnings("ignore", "No application metrics to publish")
    from functions.collect.handler import lambda_handler

    server = CollectorServer((args.host, args.port), lambda_handler)
    print(f"READY {uuid.uuid4().hex[:6]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

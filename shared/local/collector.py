"""A local collector worker: HTTP → API Gateway v2 event → the collect Lambda handler → HTTP.

`footfall serve` starts several of these on the same port (`SO_REUSEPORT`: the kernel spreads connections).
Each worker runs the handler for one request at a time, as a Lambda container does (Powertools' resolver
keeps the current event in a class attribute, so one process must not run two requests at once); network
I/O still overlaps, and the workers together keep both cores and the backend busy.

Run as `python -m shared.local.collector --port P` with the `FOOTFALL_*` settings in the environment.
"""

from __future__ import annotations

import argparse
import socket
import threading
import uuid
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from shared.domain.events import MAX_BATCH_BYTES
from shared.local.apigw import http_answer, http_api_event
from shared.local.backend import die_with_parent
from shared.local.context import LocalContext

# Bodies over this are refused before they are read (the handler's own limit is 500 KB after decompression).
MAX_READ_BYTES = 2 * MAX_BATCH_BYTES


class CollectorServer(ThreadingHTTPServer):
    """HTTP server sharing its port with sibling workers."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        super().__init__(address, _RequestHandler)
        self.handler = handler
        self.handler_lock = threading.Lock()

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        with self.handler_lock:
            context = LocalContext("footfall-collect", aws_request_id=event["requestContext"]["requestId"])
            return self.handler(event, context)  # type: ignore[no-any-return]


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CollectorServer

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

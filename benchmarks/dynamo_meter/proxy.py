"""The meter's HTTP front-end: a proxy in front of a DynamoDB endpoint that bills every request it forwards
(`python benchmarks/meter.py proxy --upstream URL`), and `fetch_ledger` to read its bill."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import re
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from benchmarks.dynamo_meter.ledger import Ledger
from benchmarks.dynamo_meter.meter import Meter, projected
from benchmarks.dynamo_meter.reader import BackendReader
from benchmarks.dynamo_meter.sizes import READS, WRITES, Schema
from shared.storage.schema import TABLE_DEFINITION

CONTROL_PATH = "/_meter"


class MeteringProxy(ThreadingHTTPServer):
    """Forwards every request to `upstream` and bills it; `GET /_meter` answers the ledger, `POST /_meter/reset`
    starts a new one."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], upstream: str, meter: Meter) -> None:
        super().__init__(address, _ProxyHandler)
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.meter = meter
        self.local = threading.local()

    def forward(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, list, bytes]:
        connection = getattr(self.local, "connection", None)
        for attempt in range(2):
            if connection is None:
                connection = http.client.HTTPConnection(*self.upstream, timeout=120)
                self.local.connection = connection
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                return response.status, response.getheaders(), response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = self.local.connection = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: MeteringProxy

    def do_GET(self) -> None:
        if self.path.startswith(CONTROL_PATH):
            self._answer(200, json.dumps(self.server.meter.snapshot().to_json()).encode())
            return
        self._relay(b"")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith(CONTROL_PATH + "/reset"):
            self.server.meter.reset()
            self._answer(200, b"{}")
            return
        self._relay(body)

    def _relay(self, body: bytes) -> None:
        target = self.headers.get("X-Amz-Target", "")
        operation = target.rpartition(".")[2]
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "content-length")}
        meter = self.server.meter
        params = json.loads(body) if body and operation else {}
        replayed_read = operation in READS and _needs_replay(operation, params)
        serialize = operation in WRITES or replayed_read
        with meter.lock if serialize else contextlib.nullcontext():
            seen = meter.before(operation, params) if operation else None
            status, response_headers, data = self.server.forward(self.command, self.path, body, headers)
            if seen is not None:
                try:
                    answer = json.loads(data) if data else {}
                except ValueError:
                    answer = {}
                meter.after(seen, status, answer, component=_component(self.headers.get("User-Agent", "")))
        self.send_response(status)
        for name, value in response_headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _answer(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _component(user_agent: str) -> str:
    """The function a request came from: `footfall/<component>` in its User-Agent (`make_client(component=…)`)."""
    found = re.search(r"footfall/([a-z]+)", user_agent)
    return found.group(1) if found else ""


def _needs_replay(operation: str, params: Mapping[str, Any]) -> bool:
    if operation in ("Query", "Scan"):
        return (
            bool(projected(params) or {"FilterExpression", "QueryFilter", "ScanFilter"} & set(params))
            or params.get("Select") == "COUNT"
        )
    if operation == "GetItem":
        return projected(params)
    if operation == "BatchGetItem":
        return any(projected(r) for r in params.get("RequestItems", {}).values())
    if operation == "TransactGetItems":
        return any(projected(a.get("Get", {})) for a in params.get("TransactItems", []))
    return False


def start_proxy(
    upstream: str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    region: str = "us-east-1",
    qualify: Mapping[str, str] | None = None,
) -> MeteringProxy:
    """A metering proxy in front of `upstream`, serving in a daemon thread (`shutdown()` stops it)."""
    from shared.storage.dynamo import make_client

    schema = Schema.from_definition(TABLE_DEFINITION)
    reader = BackendReader(make_client(endpoint_url=upstream, region=region), schema)
    meter = Meter(reader, schema=schema, qualify=qualify)
    proxy = MeteringProxy((host, port), upstream, meter)
    threading.Thread(target=proxy.serve_forever, daemon=True, name="metering-proxy").start()
    return proxy


def fetch_ledger(endpoint: str, *, reset: bool = False) -> Ledger:
    """The ledger of a proxy (started with `proxy`), optionally starting a new one."""
    parts = urlsplit(endpoint)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=60)
    try:
        connection.request("GET", CONTROL_PATH)
        ledger = Ledger.from_json(json.loads(connection.getresponse().read()))
        if reset:
            connection.request("POST", CONTROL_PATH + "/reset", body=b"")
            connection.getresponse().read()
        return ledger
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Metering proxy in front of a DynamoDB endpoint.")
    sub = parser.add_subparsers(dest="command", required=True)
    proxy = sub.add_parser("proxy")
    proxy.add_argument("--upstream", required=True)
    proxy.add_argument("--host", default="127.0.0.1")
    proxy.add_argument("--port", type=int, default=0)
    proxy.add_argument("--region", default="us-east-1")
    proxy.add_argument("--qualify", action="append", default=[], metavar="ENTITY=ATTRIBUTE")
    args = parser.parse_args(argv)
    qualify = dict(pair.split("=", 1) for pair in args.qualify)
    server = start_proxy(args.upstream, host=args.host, port=args.port, region=args.region, qualify=qualify)
    print(f"READY {server.server_address[1]}", flush=True)
    threading.Event().wait()

"""`footfall serve` as a subprocess on a free port, and a small HTTP client for it."""

from __future__ import annotations

import base64
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from shared.local.stack import INFO_FILE, StackInfo, read_info
from shared.storage.dynamo import DynamoTrackingStore, make_client

FOOTFALL = [sys.executable, "-m", "shared.cli"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


@dataclass
class LocalStack:
    """A running `footfall serve` (restartable), with helpers to talk to it."""

    data_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    info: StackInfo | None = None
    log: list[Path] = field(default_factory=list)

    def start(self, timeout: float = 60.0) -> StackInfo:
        (self.data_dir / INFO_FILE).unlink(missing_ok=True)
        log_path = self.data_dir.parent / f"serve-{len(self.log)}.log"
        self.log.append(log_path)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FOOTFALL_")}
        self.process = subprocess.Popen(
            [*FOOTFALL, "serve", "--data-dir", str(self.data_dir), "--port", str(self.port)],
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = read_info(self.data_dir)
            if info and info.pid == self.process.pid:
                self.info = info
                return info
            if self.process.poll() is not None:
                raise RuntimeError(f"footfall serve exited: {log_path.read_text()}")
            time.sleep(0.1)
        raise RuntimeError(f"footfall serve did not get ready: {log_path.read_text()}")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        _wait_port_free(self.port)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    @property
    def write_key(self) -> str:
        assert self.info and self.info.write_key
        return self.info.write_key

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        write_key: str | None = None,
    ) -> Reply:
        assert self.info is not None
        all_headers = dict(headers or {})
        if write_key:
            all_headers["Authorization"] = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        request = urllib.request.Request(self.info.collector_url + path, data=body, method=method, headers=all_headers)
        try:
            with _opener.open(request, timeout=30) as answer:
                return Reply(answer.status, dict(answer.headers), answer.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, dict(error.headers), error.read())

    def post_json(self, path: str, payload: Any, **kwargs: Any) -> Reply:
        return self.request(
            "POST", path, body=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, **kwargs
        )

    def store(self) -> DynamoTrackingStore:
        assert self.info is not None
        return DynamoTrackingStore(
            self.info.table,
            client=make_client(endpoint_url=self.info.dynamodb_endpoint, region=self.info.region),
        )

    def events(self, kind: str, identifier: str) -> list[Any]:
        """What was sent for one identity: its stored events, less the stack's own segment announcements."""
        return [e for e in self.store().list_identity_events(kind, identifier) if e.source_id != "footfall"]

    def cli(self, *args: str) -> Any:
        """Run `footfall <args> --json --data-dir …` and parse its output."""
        done = subprocess.run(
            [*FOOTFALL, *args, "--json", "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def stored_message_ids(self) -> list[str]:
        """Message ids of every stored event, read when two scans in a row agree.

        A paged scan is not a snapshot: items the stack writes meanwhile (segment announcements, after processing)
        can shift pages and show an item twice, so one scan alone could report a duplicate that is not there.
        """
        previous = None
        for _ in range(10):
            current = self._scan_message_ids()
            if current == previous:
                return current
            previous = current
            time.sleep(0.5)
        return previous or []

    def _scan_message_ids(self) -> list[str]:
        store = self.store()
        ids: list[str] = []
        paginator = store.client.get_paginator("scan")
        for page in paginator.paginate(
            TableName=store.table_name,
            FilterExpression="entity = :e",
            ExpressionAttributeValues={":e": {"S": "event"}},
            ProjectionExpression="SK",
        ):
            ids.extend(item["SK"]["S"].split("#", 2)[2] for item in page["Items"])
        return sorted(ids)


def _wait_port_free(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not 'in use'
            try:
                probe.bind(("127.0.0.1", port))
                return
            except OSError:
                time.sleep(0.1)
    raise RuntimeError(f"port {port} still busy")


@pytest.fixture
def local_stack(tmp_path: Path) -> Iterator[LocalStack]:
    stack = LocalStack(data_dir=tmp_path / "data", port=free_port())
    stack.start()
    yield stack
    stack.stop()


@dataclass
class Relayed:
    """One request as the proxy received it, and the status it answered."""

    method: str
    path: str
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes
    status: int = 0
    """What the proxy answered."""
    forwarded: int | None = None
    """What the collector answered, when the request was relayed to it."""

    @property
    def json(self) -> Any:
        data = gzip.decompress(self.body) if self.headers.get("content-encoding") == "gzip" else self.body
        return json.loads(data)


class CollectorProxy:
    """An HTTP relay on 127.0.0.1 in front of the collector: records every request, and can fail the next POSTs.

    A failed POST is answered as the collector answers when storage is down (503, `Retry-After: 1`). With
    `deliver=True` it is relayed first, so the events are stored and only the answer is lost.
    """

    _HOP_BY_HOP = frozenset({"host", "content-length", "connection", "keep-alive", "transfer-encoding"})

    def __init__(self, target: str) -> None:
        self.target = target
        self.requests: list[Relayed] = []
        self._lock = threading.Lock()
        self._failures = 0
        self._deliver = False
        self._retry_after = True
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _RelayHandler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, name="collector-proxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def posts(self) -> list[Relayed]:
        with self._lock:
            return [r for r in self.requests if r.method == "POST"]

    def fail_posts(self, count: int, *, deliver: bool = False, retry_after: bool = True) -> None:
        with self._lock:
            self._failures, self._deliver, self._retry_after = count, deliver, retry_after

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def relay(self, seen: Relayed) -> tuple[int, list[tuple[str, str]], bytes]:
        with self._lock:
            self.requests.append(seen)
            fail = seen.method == "POST" and self._failures > 0
            if fail:
                self._failures -= 1
            deliver, retry_after = self._deliver, self._retry_after
        answer = None
        if deliver or not fail:
            answer = self._forward(seen)
            seen.forwarded = answer[0]
        if fail:
            answer = self._storage_down(retry_after)
        assert answer is not None
        seen.status = answer[0]
        return answer

    def _forward(self, seen: Relayed) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {name: value for name, value in seen.headers.items() if name not in self._HOP_BY_HOP}
        request = urllib.request.Request(
            self.target + seen.path, data=seen.body or None, method=seen.method, headers=headers
        )
        try:
            with _opener.open(request, timeout=30) as answer:
                return answer.status, list(answer.headers.items()), answer.read()
        except urllib.error.HTTPError as error:
            return error.code, list(error.headers.items()), error.read()

    @staticmethod
    def _storage_down(retry_after: bool) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = [("Content-Type", "application/json")] + ([("Retry-After", "1")] if retry_after else [])
        return 503, headers, b'{"success":false,"error":"storage is unavailable; retry the request"}'


class _RelayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        seen = Relayed(
            self.command,
            self.path,
            {name.lower(): value for name, value in self.headers.items()},
            self.rfile.read(length) if length else b"",
        )
        status, headers, data = self.server.proxy.relay(seen)  # type: ignore[attr-defined]
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in CollectorProxy._HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def collector_proxy(local_stack: LocalStack) -> Iterator[CollectorProxy]:
    """A recording relay to `local_stack`'s collector (see `CollectorProxy`); point an SDK at `collector_proxy.url`."""
    assert local_stack.info is not None
    proxy = CollectorProxy(local_stack.info.collector_url)
    proxy.start()
    yield proxy
    proxy.stop()

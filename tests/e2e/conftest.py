"""`footfall serve` as a subprocess on a free port, and a small HTTP client for it."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
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
            self.info.table, client=make_client(endpoint_url=self.info.dynamodb_endpoint, region=self.info.region)
        )

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
        """Message ids of every stored event (a scan: fine for tests)."""
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
        return ids


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

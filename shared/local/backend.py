"""The embedded backend: moto's DynamoDB-compatible server, made durable by a write-ahead journal.

moto keeps its state in memory. Every request that changes state is applied and then appended to
`<data-dir>/dynamodb.journal` and fsync'd *before* the answer leaves; on start the journal is replayed in
order. So whatever a client was told is stored survives a restart, `kill -9` included. Requests are
applied one at a time (moto is not built for concurrent mutation), which also makes the journal's order
the order in which they took effect, and replay deterministic.

Run as `python -m shared.local.backend --data-dir D [--port P]`; it prints `READY <port>` when serving.
"""

from __future__ import annotations

import argparse
import ctypes
import io
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

JOURNAL_NAME = "dynamodb.journal"
MUTATING = frozenset(
    {
        "CreateTable",
        "UpdateTable",
        "DeleteTable",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
        "TransactWriteItems",
        "UpdateTimeToLive",
        "TagResource",
        "UntagResource",
        "ExecuteStatement",
        "BatchExecuteStatement",
        "ExecuteTransaction",
    }
)
StartResponse = Callable[..., Any]


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (so `kill -9 footfall serve` leaves no orphans)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class JournaledApp:
    """WSGI middleware around moto: serialises requests and journals the successful mutating ones."""

    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]], journal: Path) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.journal_path = journal
        self.journal = journal.open("ab")

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured.update(status=status, headers=headers)
            return lambda _: None

        with self.lock:
            answer = b"".join(self.app(environ, capture))
            if target.rpartition(".")[2] in MUTATING and captured["status"].startswith("200"):
                record = {
                    "target": target,
                    "auth": _unsigned(environ.get("HTTP_AUTHORIZATION", "")),
                    "body": body.decode("utf-8"),
                }
                self.journal.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
                self.journal.flush()
                os.fsync(self.journal.fileno())
        start_response(captured["status"], captured["headers"])
        return [answer]


def _unsigned(authorization: str) -> str:
    # Keep the credential scope (account, region, service route the request in moto); drop the signature.
    scope = authorization.split("Credential=", 1)[-1].split(",", 1)[0]
    return f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=0"


def replay(app: Callable[..., Iterable[bytes]], journal: Path) -> int:
    """Apply a journal to a fresh moto; a torn last line (crash mid-write, never acknowledged) is cut off."""
    from werkzeug.test import EnvironBuilder

    if not journal.exists():
        return 0
    count = 0
    good_bytes = 0
    with journal.open("rb") as lines:
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                break
            builder = EnvironBuilder(
                method="POST",
                path="/",
                data=record["body"].encode("utf-8"),
                headers={
                    "X-Amz-Target": record["target"],
                    "Authorization": record["auth"],
                    "Content-Type": "application/x-amz-json-1.0",
                    "Host": "localhost",
                },
            )
            statuses: list[str] = []

            def keep_status(status: str, headers: Any, exc_info: Any = None, into: list[str] = statuses) -> Any:
                into.append(status)
                return lambda _: None

            b"".join(app(builder.get_environ(), keep_status))
            if not statuses[0].startswith("200"):  # it succeeded when journaled: replay must reproduce it
                print(f"journal replay diverged at record {count + 1}: {statuses[0]}", file=sys.stderr, flush=True)
            count += 1
            good_bytes += len(line)
    if good_bytes != journal.stat().st_size:
        with journal.open("r+b") as handle:
            handle.truncate(good_bytes)
    return count


def main(argv: list[str] | None = None) -> None:
    """Serve moto with the journal until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    die_with_parent()

    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    args.data_dir.mkdir(parents=True, exist_ok=True)
    journal = args.data_dir / JOURNAL_NAME
    moto_app = DomainDispatcherApplication(create_backend_app)
    replayed = replay(moto_app, journal)
    server = make_server(
        args.host,
        args.port,
        JournaledApp(moto_app, journal),
        threaded=True,
        request_handler=_QuietHandler(MotoRequestHandler),
    )
    print(f"READY {server.server_port} replayed={replayed}", flush=True)
    server.serve_forever()


def _QuietHandler(base: type) -> type:
    class Quiet(base):  # type: ignore[misc, valid-type]
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    return Quiet


if __name__ == "__main__":
    sys.exit(main())

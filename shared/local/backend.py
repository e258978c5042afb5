"""The embedded backend: moto's DynamoDB-compatible server, made durable by a write-ahead journal.

moto keeps its state in memory. Every request that changes state is applied and then appended to the
journal `<data-dir>/dynamodb.journal.<generation>` and fsync'd *before* the answer leaves; on start the
journal is replayed in order. So whatever a client was told is stored survives a restart, `kill -9`
included. Requests are applied one at a time (moto is not built for concurrent mutation), which also
makes the journal's order the order in which they took effect, and replay deterministic.

So that restarts stay fast, the state is compacted into `<data-dir>/dynamodb.snapshot` (a pickle of
moto's DynamoDB backends, stream records and their sequence numbers included) when the journal passes
`--compact-mb` and on a clean stop. The snapshot names the journal generation that continues it, and is
written to a temporary file, fsync'd and renamed before that journal is started: a crash at any point
leaves either the old snapshot with its complete journal, or the new snapshot with its (new) journal.

Nothing but its owner may talk to it. It listens on loopback only and serves the DynamoDB and DynamoDB
Streams JSON APIs and nothing else (no `/moto-api`, no CORS: a request carrying an `Origin` header, as every
cross-origin request from a web page does, is refused). Each start draws fresh random credentials and
writes them to `<data-dir>/backend-credentials.json` (0600); a request whose SigV4 `Authorization` does not
name that access key id is refused. No request deletes a table, and a snapshot is never written over good
data when a table vanished or emptied while running: the journal is kept instead (see `Durability`).

Run as `python -m shared.local.backend --data-dir D [--port P]`; it prints `READY <port>` when serving.
"""

from __future__ import annotations

import argparse
import ctypes
import hmac
import io
import json
import os
import pickle
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.local.files import UMASK, open_private, private_dir, write_private_json

JOURNAL_PREFIX = "dynamodb.journal."
SNAPSHOT_NAME = "dynamodb.snapshot"
CREDENTIALS_FILE = "backend-credentials.json"
HOST = "127.0.0.1"
SERVED_APIS = frozenset({"DynamoDB_20120810", "DynamoDBStreams_20120810"})
REFUSED_ACTIONS = frozenset({"DeleteTable"})
"""The local stack never deletes its table; a request that would is refused (remove the data directory instead)."""
JOURNAL_ACCESS_KEY = "footfall"
"""What the journal keeps in place of the (per-start, secret) access key id: moto routes by scope only."""
DEFAULT_COMPACT_MB = 256
STREAM_RETENTION = timedelta(hours=24)
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


class Durability:
    """The snapshot + journal pair of a data directory."""

    def __init__(self, data_dir: Path, compact_bytes: int) -> None:
        self.data_dir = data_dir
        self.compact_bytes = compact_bytes
        self.generation = 0
        self.journal: Any = None
        self.sync_lock = threading.Lock()
        self.synced_generation = -1
        self.synced_upto = 0
        self.baseline: dict[tuple[str, str, str], int] = {}
        """Item count of every table when the state was last known good (loaded, or snapshotted)."""
        self.compaction_refused = False

    def journal_path(self, generation: int) -> Path:
        return self.data_dir / f"{JOURNAL_PREFIX}{generation}"

    def load(self, app: Callable[..., Iterable[bytes]]) -> int:
        """Restore the snapshot, replay its journal, and open that journal for appending."""
        snapshot = self.data_dir / SNAPSHOT_NAME
        if snapshot.exists():
            with snapshot.open("rb") as handle:
                saved = pickle.load(handle)  # written by this program into its own data dir
            _restore_backends(saved["backends"])
            self.generation = saved["generation"]
        replayed = replay(app, self.journal_path(self.generation))
        for stale in self.data_dir.glob(JOURNAL_PREFIX + "*"):
            suffix = stale.name[len(JOURNAL_PREFIX) :]
            if suffix.isdigit() and int(suffix) < self.generation:
                stale.unlink()
        self.journal = open_private(self.journal_path(self.generation))
        self.baseline = _table_counts()
        return replayed

    def append(self, record: dict[str, str]) -> int:
        """Write a record (callers hold the request lock); returns the position to `sync` before answering."""
        self.journal.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
        self.journal.flush()
        return self.journal.tell()

    def sync(self, generation: int, position: int) -> None:
        """Make the journal durable up to `position` (group commit: one fsync covers every earlier append).

        Called after the request lock is released, so requests keep being applied while one fsync runs; a
        request is answered only once its own record (and so everything applied before it) is on disk. A
        record of an older generation is already in the (fsync'd) snapshot that closed that generation.
        """
        with self.sync_lock:
            if generation != self.generation:
                return
            if self.synced_generation == generation and self.synced_upto >= position:
                return
            upto = self.journal.tell()
            os.fsync(self.journal.fileno())
            self.synced_generation, self.synced_upto = generation, upto

    def maybe_compact(self) -> None:
        """Compact when the journal has grown past the threshold (callers hold the request lock)."""
        if self.journal.tell() > self.compact_bytes and not self.compaction_refused:
            self.compact()

    def compact(self) -> None:
        """Snapshot the state and start the next journal generation (callers hold the request lock)."""
        with self.sync_lock:  # no fsync may run on the journal being closed
            lost = _lost_tables(self.baseline, _table_counts())
            if lost:
                # The snapshot would replace good data by less; the old snapshot and its journal still hold it.
                self.compaction_refused = True
                print(f"snapshot refused, journal kept: {', '.join(lost)} vanished or emptied", file=sys.stderr)
                return
            self._compact()

    def _compact(self) -> None:
        from moto.dynamodb.models import dynamodb_backends

        trim_streams(dynamodb_backends, datetime.now(UTC).replace(tzinfo=None))

        backends = {account: dict(regions) for account, regions in dynamodb_backends.items()}
        tmp = self.data_dir / (SNAPSHOT_NAME + ".tmp")
        with open_private(tmp, "wb") as handle:
            pickle.dump(
                {"generation": self.generation + 1, "backends": backends}, handle, protocol=pickle.HIGHEST_PROTOCOL
            )
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(self.data_dir / SNAPSHOT_NAME)
        directory = os.open(self.data_dir, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        old = self.journal_path(self.generation)
        self.journal.close()
        self.generation += 1
        self.journal = open_private(self.journal_path(self.generation))
        old.unlink(missing_ok=True)
        self.baseline = _table_counts()


def _table_counts() -> dict[tuple[str, str, str], int]:
    from moto.dynamodb.models import dynamodb_backends

    return {
        (account, region, name): len(table)
        for account, regions in dynamodb_backends.items()
        for region, backend in regions.items()
        for name, table in backend.tables.items()
    }


def _lost_tables(baseline: dict[tuple[str, str, str], int], now: dict[tuple[str, str, str], int]) -> list[str]:
    """Tables that held items when last known good and now are gone or empty (no client request does that)."""
    return [
        table for (account, region, table), count in baseline.items() if count and not now.get((account, region, table))
    ]


def trim_streams(backends: Any, now: datetime) -> int:
    """Drop stream records older than 24 hours, as DynamoDB Streams does; returns how many.

    Without it a long-running stack would keep every stream record in memory (and in every snapshot) for ever.
    Sequence numbers stay what they were: the shard's first number moves up by the records dropped.

    Args:
        now: naive UTC, as moto stamps its stream records.
    """
    cutoff = now - STREAM_RETENTION
    dropped = 0
    for regions in backends.values():
        for backend in regions.values():
            for table in backend.tables.values():
                shard = table.stream_shard
                if shard is None:
                    continue
                old = 0
                while (
                    old < len(shard.items)
                    and shard.items[old].record["dynamodb"]["ApproximateCreationDateTime"] < cutoff
                ):
                    old += 1
                if old:
                    del shard.items[:old]
                    shard.starting_sequence_number += old
                    dropped += old
    return dropped


def _restore_backends(backends: dict[str, dict[str, Any]]) -> None:
    from moto.dynamodb.models import dynamodb_backends

    for account, regions in backends.items():
        for region, backend in regions.items():
            dynamodb_backends[account][region] = backend


class JournaledApp:
    """WSGI middleware around moto: serialises requests and journals the successful mutating ones."""

    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]], durability: Durability) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.durability = durability

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            captured.update(status=status, headers=headers)
            return lambda _: None

        written: tuple[int, int] | None = None
        with self.lock:
            answer = b"".join(self.app(environ, capture))
            if target.rpartition(".")[2] in MUTATING and captured["status"].startswith("200"):
                record = {
                    "target": target,
                    "auth": _unsigned(environ.get("HTTP_AUTHORIZATION", "")),
                    "body": body.decode("utf-8"),
                }
                written = (self.durability.generation, self.durability.append(record))
        if written is not None:
            self.durability.sync(*written)  # the answer leaves only once its record is on disk
            with self.lock:
                self.durability.maybe_compact()
        start_response(captured["status"], captured["headers"])
        return [answer]

    def compact(self) -> None:
        """Snapshot now (between requests)."""
        with self.lock:
            self.durability.compact()


def _unsigned(authorization: str) -> str:
    # Keep the credential scope (region and service route the request in moto); drop the key id and signature.
    scope = authorization.split("Credential=", 1)[-1].split(",", 1)[0].partition("/")[2]
    return f"AWS4-HMAC-SHA256 Credential={JOURNAL_ACCESS_KEY}/{scope}, SignedHeaders=host, Signature=0"


def access_key_id(authorization: str) -> str | None:
    """The access key id a SigV4 `Authorization` header names (`... Credential=<id>/<date>/...`), if any."""
    scheme, _, rest = authorization.partition(" ")
    if scheme != "AWS4-HMAC-SHA256" or "Credential=" not in rest:
        return None
    return rest.split("Credential=", 1)[1].split("/", 1)[0] or None


def new_credentials(data_dir: Path) -> dict[str, str]:
    """Draw this start's credentials and write them to the data directory (0600) for the stack's clients."""
    credentials = {
        "aws_access_key_id": "FFLOCAL" + secrets.token_hex(16).upper(),
        "aws_secret_access_key": secrets.token_urlsafe(32),
    }
    write_private_json(data_dir / CREDENTIALS_FILE, credentials)
    return credentials


def read_credentials(data_dir: Path) -> dict[str, str] | None:
    """The running backend's credentials (`aws_access_key_id`, `aws_secret_access_key`), if it wrote them."""
    try:
        data = json.loads((data_dir / CREDENTIALS_FILE).read_text())
        return {
            "aws_access_key_id": str(data["aws_access_key_id"]),
            "aws_secret_access_key": str(data["aws_secret_access_key"]),
        }
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Guard:
    """WSGI middleware in front of everything: only the owner's signed DynamoDB API requests get through.

    Refused (403, nothing applied): a request with an `Origin` header (a web page's), anything but `POST /`
    with a DynamoDB or DynamoDB Streams target (so no `/moto-api` and no other moto service), `DeleteTable`,
    and a request whose SigV4 credential is not this start's access key id. CORS headers never leave.
    """

    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]], key_id: str) -> None:
        self.app = app
        self.key_id = key_id

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        refusal = self.refusal(environ)
        if refusal is not None:
            code, message = refusal
            body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message}).encode()
            start_response(
                "403 Forbidden",
                [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(body)))],
            )
            return [body]

        def without_cors(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            kept = [(name, value) for name, value in headers if not name.lower().startswith("access-control-")]
            return start_response(status, kept, exc_info)

        return self.app(environ, without_cors)

    def refusal(self, environ: dict[str, Any]) -> tuple[str, str] | None:
        """Why a request is refused (error code, message), or None to serve it."""
        if "HTTP_ORIGIN" in environ:
            return "AccessDeniedException", "cross-origin requests are refused"
        service, _, action = environ.get("HTTP_X_AMZ_TARGET", "").partition(".")
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != "/" or service not in SERVED_APIS:
            return "AccessDeniedException", "only the DynamoDB API is served here"
        key_id = access_key_id(environ.get("HTTP_AUTHORIZATION", ""))
        if key_id is None or not hmac.compare_digest(key_id.encode(), self.key_id.encode()):
            return "UnrecognizedClientException", "unknown access key: read it from the data directory"
        if action in REFUSED_ACTIONS:
            return "AccessDeniedException", f"{action} is refused by the local backend"
        return None


def _not_served(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
    return [b""]


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
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--compact-mb", type=int, default=DEFAULT_COMPACT_MB, help="snapshot past this journal size")
    args = parser.parse_args(argv)
    die_with_parent()

    os.umask(UMASK)
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    from shared.local import accel

    accel.install()  # a Query reads one partition, not the whole table
    private_dir(args.data_dir)
    durability = Durability(args.data_dir, args.compact_mb * 1024 * 1024)
    moto_app = accel.direct_app(_not_served)  # DynamoDB and Streams only: moto's other routes are never reached
    replayed = durability.load(moto_app)
    app = JournaledApp(moto_app, durability)
    credentials = new_credentials(args.data_dir)
    guarded = Guard(app, credentials["aws_access_key_id"])
    server = make_server(HOST, args.port, guarded, threaded=True, request_handler=_QuietHandler(MotoRequestHandler))

    def stop(*_: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"READY {server.server_port} replayed={replayed}", flush=True)
    server.serve_forever()
    app.compact()  # a clean stop leaves a snapshot and an empty journal: the next start is quick


def _QuietHandler(base: type) -> type:
    class Quiet(base):  # type: ignore[misc, valid-type]
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    return Quiet


if __name__ == "__main__":
    sys.exit(main())

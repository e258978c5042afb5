"""`footfall serve`: the whole pipeline on one machine, on the embedded database (SQLite, `<data-dir>/footfall.db`)
or any DynamoDB endpoint (`--endpoint-url`: DynamoDB Local, moto's server for development, AWS)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from shared.domain.sources import new_source
from shared.local.files import UMASK, private_dir, write_private_json
from shared.storage.dynamo import DynamoTrackingStore, make_client
from shared.storage.migrate import migrate, stamp_new_table
from shared.storage.schema import TABLE_DEFINITION, TTL_ATTRIBUTE
from shared.storage.sqlite import sqlite_endpoint

INFO_FILE = "serve.json"
DATABASE_FILE = "footfall.db"
DEFAULT_SOURCE_FILE = "default-source.json"
OUTBOX_FILE = "outbox.jsonl"
STARTERS = Path(__file__).resolve().parents[2] / "infra" / "segments" / "starters.json"
DEFAULT_TABLE = "footfall"
DEFAULT_REGION = "us-east-1"
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "footfall", "AWS_SECRET_ACCESS_KEY": "footfall"}
"""For an endpoint of your own (`--endpoint-url`) when no credentials are set."""


@dataclass(frozen=True)
class StackInfo:
    """What `footfall serve` tells other processes (CLI, TUI, scripts) in `<data-dir>/serve.json`."""

    collector_url: str
    dynamodb_endpoint: str
    table: str
    region: str
    write_key: str | None
    pid: int


def read_info(data_dir: Path) -> StackInfo | None:
    """The running (or last) local stack's coordinates, if `serve` ever ran with this data dir.

    Fields this version does not know (an older version's `credentials`) are left out.
    """
    try:
        saved = json.loads((data_dir / INFO_FILE).read_text())
        return StackInfo(**{field.name: saved[field.name] for field in fields(StackInfo)})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def local_env(region: str, endpoint: str, table: str, outbox: Path | None = None) -> dict[str, str]:
    """Environment for the local workers: the collector's settings, credentials, quiet Powertools.

    Credentials are fake ones unless the environment has some (an endpoint of your own may want real ones); the
    embedded database needs none.
    """
    env = dict(os.environ)
    for name, value in LOCAL_CREDENTIALS.items():
        env.setdefault(name, value)
    env.update(
        {
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
            "FOOTFALL_TABLE_NAME": table,
            "FOOTFALL_DYNAMODB_ENDPOINT": endpoint,
            "FOOTFALL_OUTBOX_PATH": str(outbox) if outbox else "",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": env.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def ensure_table(client: Any, table: str, *, stamp: bool = True) -> None:
    """Create the table from the one definition unless it exists; a new table is stamped with the newest schema
    version (`storage.migrate`: nothing to migrate) unless `stamp` is off (an import brings its own)."""
    try:
        client.describe_table(TableName=table)
        return
    except client.exceptions.ResourceNotFoundException:
        pass
    client.create_table(TableName=table, **TABLE_DEFINITION)
    client.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    with contextlib.suppress(ClientError):  # as on AWS (infra/template.yaml), where the endpoint has TTL at all
        client.update_time_to_live(
            TableName=table, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
        )
    if stamp:
        stamp_new_table(DynamoTrackingStore(table, client=client))


def ensure_migrated(store: DynamoTrackingStore, *, out: Callable[[str], None] = print) -> None:
    """Run `footfall migrate` on the table if it was written by an older version."""
    for name, changed in migrate(store):
        out(f"migrated {store.table_name}: {name} ({changed} items changed)")


def ensure_default_source(store: DynamoTrackingStore, data_dir: Path) -> str | None:
    """Create the `default` source on first start; returns its write key (kept in the data dir, mode 0600)."""
    path = data_dir / DEFAULT_SOURCE_FILE
    with contextlib.suppress(OSError, ValueError, KeyError):
        saved = json.loads(path.read_text())
        if store.get_source(saved["source_id"]) is not None:
            return str(saved["write_key"])
    if store.get_source("default") is not None:
        return None  # created by another data dir: its key is not ours to know
    source, write_key = new_source(
        source_id="default", name="Default", created_at=datetime.now(UTC), token=secrets.token_urlsafe
    )
    store.put_source(source, write_keys=[write_key])
    write_private_json(path, {"source_id": source.id, "write_key": write_key})
    return write_key


def ensure_starter_segments(store: DynamoTrackingStore) -> None:
    """Apply the starter segments (infra/segments/starters.json) when no segment is defined yet."""
    from shared.services.segments import apply_segments

    if store.list_segments() or not STARTERS.exists():
        return
    apply_segments(store, json.loads(STARTERS.read_text()), source=str(STARTERS), now=datetime.now(UTC), customers=[])


def ensure_starter_analytics(store: DynamoTrackingStore) -> None:
    """Apply the starter funnels and retention events (infra/analytics/starters.json) when none are defined."""
    from shared.services.analytics import STARTERS as ANALYTICS_STARTERS
    from shared.services.analytics import apply_definitions

    if store.get_analytics_definitions() is not None or not ANALYTICS_STARTERS.exists():
        return
    document = json.loads(ANALYTICS_STARTERS.read_text())
    apply_definitions(store, document, source=str(ANALYTICS_STARTERS), now=datetime.now(UTC))


def _port_is_free(host: str, port: int) -> bool:
    # Workers share their port through SO_REUSEPORT, so a second `serve` must be stopped here, explicitly.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not 'in use'
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _spawn(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-m", *args], env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("READY"):
        process.kill()
        raise RuntimeError(f"{args[0]} did not start (exit code {process.wait()})")
    # Keep draining the child's output (its logs) so that a full pipe can never block it.
    threading.Thread(target=_relay, args=(process.stdout, args[0].rsplit(".", 1)[-1]), daemon=True).start()
    return process, line


def _relay(stream: Any, name: str) -> None:
    for line in stream:
        sys.stdout.write(f"[{name}] {line}")
        sys.stdout.flush()


@dataclass
class Stack:
    """The processes of a running local stack."""

    info: StackInfo
    processes: list[subprocess.Popen[str]]

    def stop(self) -> None:
        """Terminate every child process."""
        stop_processes(self.processes)


def stop_processes(processes: list[subprocess.Popen[str]]) -> None:
    """Terminate the processes, then kill those still there after 5 s."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


def start(
    *,
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8788,
    endpoint_url: str | None = None,
    table: str = DEFAULT_TABLE,
    region: str = DEFAULT_REGION,
    workers: int = 2,
    durable: bool = False,
) -> Stack:
    """Start the table, the default source, the collector workers and the stream runner (which feeds the process
    handler), on the embedded database `<data-dir>/footfall.db` (opened by every process itself) unless
    `endpoint_url` names a DynamoDB endpoint.

    The data directory is made (or narrowed to) 0700 with its files 0600, and this process and its children
    create files 0600 from here on (umask 077).

    Args:
        durable: every process commits to the embedded database with `synchronous=FULL` (each commit on disk
            before the collector answers: a power cut loses nothing acknowledged) instead of NORMAL.
    """
    os.umask(UMASK)
    private_dir(data_dir)
    if not _port_is_free(host, port):
        raise RuntimeError(f"port {port} on {host} is in use (another footfall serve?); pick one with --port")
    processes: list[subprocess.Popen[str]] = []
    outbox = data_dir / OUTBOX_FILE
    endpoint_url = endpoint_url or sqlite_endpoint(data_dir / DATABASE_FILE, durable=durable)
    env = local_env(region, endpoint_url, table, outbox)
    try:
        client = make_client(endpoint_url=endpoint_url, region=region)
        ensure_table(client, table)
        store = DynamoTrackingStore(table, client=client)
        ensure_migrated(store)  # before any worker reads the table
        write_key = ensure_default_source(store, data_dir)
        ensure_starter_segments(store)
        ensure_starter_analytics(store)
        for _ in range(max(1, workers)):
            worker, _ready = _spawn(["shared.local.collector", "--host", host, "--port", str(port)], env)
            processes.append(worker)
        runner, _ready = _spawn(["shared.local.streams", "--data-dir", str(data_dir)], env)
        processes.append(runner)
    except BaseException:
        stop_processes(processes)
        raise
    info = StackInfo(
        collector_url=f"http://{host}:{port}",
        dynamodb_endpoint=endpoint_url,
        table=table,
        region=region,
        write_key=write_key,
        pid=os.getpid(),
    )
    write_private_json(data_dir / INFO_FILE, asdict(info))
    return Stack(info, processes)


def run(stack: Stack, *, out: Callable[[str], None] = print) -> int:
    """Supervise until SIGINT/SIGTERM; if any child process dies the whole stack stops (exit code 1)."""
    info = stack.info
    out(f"footfall collector  {info.collector_url}")
    out(f"dynamodb endpoint   {info.dynamodb_endpoint}  (table {info.table}, region {info.region})")
    out(f"write key           {info.write_key or '(default source made elsewhere: footfall sources add NAME)'}")
    example = json.dumps({"userId": "u1", "event": "Hello"})
    out(
        f"ready. try: curl -u {info.write_key or '<write key>'}: -H 'Content-Type: application/json' "
        f"-d '{example}' {info.collector_url}/v1/track"
    )
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping:
            time.sleep(0.2)
            for process in stack.processes:
                if process.poll() is not None:
                    out(f"a local process exited unexpectedly (code {process.returncode}); stopping")
                    return 1
    finally:
        stack.stop()
    return 0

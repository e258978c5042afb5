"""The benchmark's processes (`bench.py`): `footfall serve` started and stopped (only processes this script
started), processing catch-up, and the collect handler's import time in fresh interpreters."""

from __future__ import annotations

import atexit
import base64
import contextlib
import http.client
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.local.stack import INFO_FILE, read_info
from shared.storage.dynamo import DynamoTrackingStore, make_client

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # the only address this script ever talks to


# --- child processes ----------------------------------------------------------------------------------------------

_children: list[subprocess.Popen[Any]] = []


def _track(process: subprocess.Popen[Any]) -> subprocess.Popen[Any]:
    _children.append(process)
    return process


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if it does not exit; only ever a process this script started."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if process in _children:
        _children.remove(process)


def stop_all() -> None:
    """Stop every child process still running (also runs at exit)."""
    for process in list(_children):
        with contextlib.suppress(Exception):
            stop_process(process)


atexit.register(stop_all)


def on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the `finally` blocks, which stop the children


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


# --- the local stack --------------------------------------------------------------------------------------------


@dataclass
class Serve:
    process: subprocess.Popen[Any]
    data_dir: Path
    port: int
    workers: int
    info: Any


def start_serve(workers: int, data_dir: Path | None = None) -> Serve:
    """`footfall serve` on a free port, once its `serve.json` says it is ready (this start's, not a stale one).

    Args:
        data_dir: the data directory to serve (default: a fresh temporary one, removed by `discard_serve`).
    """
    footfall = Path(sys.executable).parent / "footfall"
    if not footfall.exists():
        raise RuntimeError(f"{footfall} not found: run `make setup` first")
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="footfall-bench-serve-"))
    (data_dir / INFO_FILE).unlink(missing_ok=True)
    port = free_port()
    log = (data_dir / "serve.log").open("w")
    command = [str(footfall), "serve", "--data-dir", str(data_dir), "--host", HOST, "--port", str(port)]
    command += ["--workers", str(workers)]
    process = _track(
        subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    )
    log.close()
    deadline = time.monotonic() + 90
    try:
        while True:
            info = read_info(data_dir)
            if info is not None and info.pid == process.pid:
                break
            if process.poll() is not None:
                raise RuntimeError(f"footfall serve exited ({process.returncode}): {tail_of(data_dir / 'serve.log')}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"footfall serve did not get ready: {tail_of(data_dir / 'serve.log')}")
            time.sleep(0.1)
        if not info.write_key or not info.collector_url.startswith(f"http://{HOST}:"):
            raise RuntimeError(f"unexpected serve.json: {info}")
        if not info.dynamodb_endpoint.startswith((f"http://{HOST}:", "sqlite:///")):
            raise RuntimeError(f"serve's database is not local: {info.dynamodb_endpoint}")
    except BaseException:
        discard_serve(Serve(process, data_dir, port, workers, None))
        raise
    return Serve(process, data_dir, port, workers, info)


def discard_serve(serve: Serve) -> None:
    stop_process(serve.process)
    shutil.rmtree(serve.data_dir, ignore_errors=True)


def tail_of(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text()[-600:]
    return ""


# --- processing catch-up (throughput and steady-load runs) ----------------------------------------------------


def wait_for_processing(serve: Serve, *, timeout: float = 60.0) -> float:
    """Seconds, from now (the load just stopped), until processing has caught up.

    A marker event is posted after the load; the stream delivers records in order, so once the marker's customer
    profile exists, everything before it has been processed too.
    """
    started = time.monotonic()
    marker = f"bench-marker-{uuid.uuid4().hex[:10]}"
    auth = "Basic " + base64.b64encode(f"{serve.info.write_key}:".encode()).decode()
    connection = http.client.HTTPConnection(HOST, serve.port, timeout=60)
    connection.request(
        "POST",
        "/v1/track",
        body=json.dumps({"userId": marker, "event": "Bench Marker"}),
        headers={"Content-Type": "application/json", "Authorization": auth},
    )
    connection.getresponse().read()
    connection.close()
    store = DynamoTrackingStore(
        serve.info.table,
        client=make_client(endpoint_url=serve.info.dynamodb_endpoint, region=serve.info.region),
    )
    while time.monotonic() - started < timeout:
        if store.get_profiles([f"u:{marker}"]):
            return time.monotonic() - started
        time.sleep(0.2)
    return math.inf  # not caught up within the timeout: reported as such


# --- figure 3: import time --------------------------------------------------------------------------------------

HANDLER_IMPORT = """
import time
started = time.perf_counter()
import functions.collect.handler
print(time.perf_counter() - started)
"""
BOTO3_IMPORT = """
import time
started = time.perf_counter()
import boto3
boto3.client("dynamodb", region_name="us-east-1")
print(time.perf_counter() - started)
"""


def import_times(runs: int) -> tuple[list[float], list[float]]:
    env = dict(os.environ)
    env.update({"FOOTFALL_TABLE_NAME": "x", "AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_METRICS_DISABLED": "true"})
    env.pop("PYTHONPROFILEIMPORTTIME", None)

    def once(code: str) -> float:
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"import run failed: {done.stderr[-600:]}")
        return float(done.stdout.strip().splitlines()[-1])

    handler, boto = [], []
    for round_number in range(runs):
        # Interleaved, alternating which goes first, so drifting machine load hits both alike.
        if round_number % 2 == 0:
            handler.append(once(HANDLER_IMPORT))
            boto.append(once(BOTO3_IMPORT))
        else:
            boto.append(once(BOTO3_IMPORT))
            handler.append(once(HANDLER_IMPORT))
    return handler, boto

"""Load for the benchmark (`bench.py`): keep-alive clients posting `/v1/batch` in a measured window, the
throughput runs over `footfall serve` configurations, paced steady load, and the raw SQLite baseline."""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench_corpus import EVENTS_PER_REQUEST, TAG, Corpus, build_corpus, fresh_body
from bench_stack import HOST, Serve, discard_serve, start_serve, tail_of, wait_for_processing

from shared.domain.events import batch_items, parse_envelope, parse_event
from shared.storage import items as storage_items
from shared.storage.dynamo import serialize

TABLE = "footfall"
BATCH_WRITE_SIZE = 25
EVENT_RETENTION = timedelta(days=400)  # the collector's default (`FOOTFALL_EVENT_RETENTION_DAYS`)


# --- load generation --------------------------------------------------------------------------------------------


@dataclass
class Window:
    """Warm-up, then a measured window; work that completes inside it counts."""

    warmup: float
    duration: float
    start: float = 0.0
    stop_event: threading.Event = field(default_factory=threading.Event)

    def begin(self) -> None:
        self.start = time.perf_counter() + self.warmup

    @property
    def end(self) -> float:
        return self.start + self.duration

    def inside(self, moment: float) -> bool:
        return self.start <= moment < self.end


@dataclass
class LoadStats:
    counted: int = 0  # events accepted (or items written) inside the window
    accepted_total: int = 0  # events accepted (items written) in the whole run, warm-up included
    requests: int = 0  # requests completed inside the window
    bad_requests: int = 0  # whole run: non-200 answers, transport errors, unreadable answers
    bad_events: int = 0  # whole run: events of a 200 answer that were not `accepted`
    samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def merge(self, other: LoadStats) -> None:
        self.counted += other.counted
        self.accepted_total += other.accepted_total
        self.requests += other.requests
        self.bad_requests += other.bad_requests
        self.bad_events += other.bad_events
        self.samples.extend(other.samples[: max(0, 5 - len(self.samples))])
        self.latencies.extend(other.latencies)


def run_threads(count: int, window: Window, work: Callable[[int, LoadStats], None]) -> LoadStats:
    """Run `work(thread_index, stats)` in `count` threads through warm-up and window; merged stats."""
    per_thread = [LoadStats() for _ in range(count)]
    failures: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            work(index, per_thread[index])
        except BaseException as exc:  # reported below: a dead client thread must not go unnoticed
            failures.append(exc)
            window.stop_event.set()

    threads = [threading.Thread(target=guarded, args=(i,), daemon=True) for i in range(count)]
    window.begin()
    for thread in threads:
        thread.start()
    while not window.stop_event.is_set() and time.perf_counter() < window.end:
        time.sleep(0.05)
    window.stop_event.set()
    for thread in threads:
        thread.join(timeout=120)
    if failures:
        raise RuntimeError(f"a load thread failed: {failures[0]!r}") from failures[0]
    total = LoadStats()
    for stats in per_thread:
        total.merge(stats)
    return total


def drive_collector(port: int, write_key: str, corpus: Corpus, clients: int, window: Window) -> LoadStats:
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()

    def client(index: int, stats: LoadStats) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=60)
        turn = index
        try:
            while not window.stop_event.is_set():
                template = turn % len(corpus.bodies)
                turn += clients
                body = fresh_body(corpus.bodies[template])
                headers = {
                    "Content-Type": "application/json",
                    "Authorization": auth,
                    "User-Agent": "bench",
                }
                sent = time.perf_counter()
                try:
                    connection.request("POST", "/v1/batch", body=body, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    stats.bad_requests += 1
                    stats.samples.append(f"transport: {exc!r}")
                    connection.close()
                    time.sleep(0.05)  # a refused or reset connection must not turn into a busy loop
                    connection = http.client.HTTPConnection(HOST, port, timeout=60)
                    continue
                done = time.perf_counter()
                accepted = _accepted(response.status, data, stats)
                stats.accepted_total += accepted
                if window.inside(done):
                    stats.counted += accepted
                    stats.requests += 1
                    stats.latencies.append(done - sent)
        finally:
            connection.close()

    return run_threads(clients, window, client)


def paced_lag(rate: float, duration: float) -> tuple[float, int]:
    """A steady load of `rate` events/s for `duration` s on a fresh stack; returns (seconds the stream runner
    needed after the load to catch up, events accepted)."""
    serve = start_serve(2)
    try:
        corpus = build_corpus(serve.info.write_key, seed=23)
        auth = "Basic " + base64.b64encode(f"{serve.info.write_key}:".encode()).decode()
        connection = http.client.HTTPConnection(HOST, serve.port, timeout=60)
        stats = LoadStats()
        interval = EVENTS_PER_REQUEST / rate
        started = time.perf_counter()
        for turn in range(max(1, int(duration / interval))):
            due = started + turn * interval
            time.sleep(max(0.0, due - time.perf_counter()))
            body = fresh_body(corpus.bodies[turn % len(corpus.bodies)])
            connection.request(
                "POST", "/v1/batch", body=body, headers={"Content-Type": "application/json", "Authorization": auth}
            )
            response = connection.getresponse()
            stats.accepted_total += _accepted(response.status, response.read(), stats)
        connection.close()
        return wait_for_processing(serve), stats.accepted_total
    finally:
        discard_serve(serve)


def _accepted(status: int, data: bytes, stats: LoadStats) -> int:
    try:
        answer = json.loads(data)
        results = answer["results"]
    except (ValueError, KeyError, TypeError):
        stats.bad_requests += 1
        stats.samples.append(f"HTTP {status}: {data[:200]!r}")
        return 0
    accepted = sum(1 for r in results if r.get("status") == "accepted")
    if status != 200 or not answer.get("success") or len(results) != EVENTS_PER_REQUEST:
        stats.bad_requests += 1
        stats.samples.append(f"HTTP {status}: {data[:200]!r}")
    stats.bad_events += EVENTS_PER_REQUEST - accepted
    return accepted if status == 200 else 0


# --- figure 2: throughput ---------------------------------------------------------------------------------------


@dataclass
class Run:
    workers: int
    clients: int
    stats: LoadStats
    died: str | None = None  # `footfall serve` exited during the run: its exit code and log tail

    def rate(self, duration: float) -> float:
        return self.stats.counted / duration


def throughput(configs: list[tuple[int, int]], args: argparse.Namespace) -> tuple[list[Run], Run, Serve]:
    """Load each (workers, clients) configuration on its own fresh stack; keeps the best one's stack running."""
    runs: list[Run] = []
    best: tuple[Run, Serve] | None = None
    try:
        for workers, clients in configs:
            serve = start_serve(workers)
            try:
                corpus = build_corpus(serve.info.write_key)
                stats = drive_collector(
                    serve.port, serve.info.write_key, corpus, clients, Window(args.warmup, args.duration)
                )
            except BaseException:
                discard_serve(serve)
                raise
            run = Run(workers, clients, stats)
            if serve.process.poll() is not None:
                run.died = f"exit code {serve.process.returncode}: {tail_of(serve.data_dir / 'serve.log')}"
            runs.append(run)
            p50 = statistics.median(stats.latencies) * 1000 if stats.latencies else float("nan")
            print(
                f"  serve --workers {workers}, {clients} clients: {run.rate(args.duration):,.0f} events/s "
                f"(p50 request {p50:.0f} ms, bad requests {stats.bad_requests}, "
                f"events not accepted {stats.bad_events}{', SERVE DIED: ' + run.died if run.died else ''})",
                flush=True,
            )
            if run.died is None and (best is None or run.rate(args.duration) > best[0].rate(args.duration)):
                if best is not None:
                    discard_serve(best[1])
                best = (run, serve)
            else:
                discard_serve(serve)
    except BaseException:
        if best is not None:
            discard_serve(best[1])
        raise
    if best is None:
        raise RuntimeError("`footfall serve` died in every configuration: " + " | ".join(str(r.died) for r in runs))
    return runs, best[0], best[1]


def template_items(corpus: Corpus) -> list[list[dict[str, Any]]]:
    """Serialized event items as the collector stores them, 25 a batch; each SK holds a replaceable uuid hex."""
    received = datetime.now(UTC)
    batches: list[list[dict[str, Any]]] = []
    for body in corpus.decoded:
        text = json.dumps(body)
        marker = uuid.uuid4().hex  # real-looking ids, so compressed bodies are as large as the real ones
        real = json.loads(text.replace(TAG, marker))
        envelope = parse_envelope(real)
        serialized = []
        for raw in batch_items(real):
            event = parse_event(raw, source_id="default", received_at=received, new_id=lambda: "", envelope=envelope)
            item = serialize(storage_items.event_to_item(event, retention=EVENT_RETENTION))
            item["SK"]["S"] = item["SK"]["S"].replace(marker, TAG)
            serialized.append(item)
        batches.extend(serialized[i : i + BATCH_WRITE_SIZE] for i in range(0, len(serialized), BATCH_WRITE_SIZE))
    return batches


RAW_SCHEMA = """
CREATE TABLE items (pk BLOB NOT NULL, sk BLOB NOT NULL, body TEXT NOT NULL, PRIMARY KEY (pk, sk)) WITHOUT ROWID;
"""


def sqlite_rate(corpus: Corpus, args: argparse.Namespace) -> LoadStats:
    """A raw SQLite insert loop: the same event items (JSON bodies, binary in base64) into a fresh WAL file with the
    embedded store's durability (`synchronous=NORMAL`), one transaction per 25, one thread: the file's ceiling."""
    import sqlite3

    def wire(item: dict[str, Any]) -> dict[str, Any]:
        return {
            name: {"B": base64.b64encode(value["B"]).decode()} if "B" in value else value
            for name, value in item.items()
        }

    batches = [[wire(item) for item in batch] for batch in template_items(corpus)]
    data_dir = Path(tempfile.mkdtemp(prefix="footfall-bench-sqlite-"))
    try:
        db = sqlite3.connect(data_dir / "raw.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(RAW_SCHEMA)
        window = Window(args.warmup, args.duration)
        window.begin()
        stats = LoadStats()
        turn = 0
        while time.perf_counter() < window.end:
            batch = batches[turn % len(batches)]
            turn += 1
            rows = []
            for item in batch:
                sk = item["SK"]["S"].replace(TAG, uuid.uuid4().hex)
                rows.append((item["PK"]["S"], sk, json.dumps({**item, "SK": {"S": sk}}, separators=(",", ":"))))
            started = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO items (pk, sk, body) VALUES (?, ?, ?)", rows)
            db.execute("COMMIT")
            done = time.perf_counter()
            stats.accepted_total += len(rows)
            if window.inside(done):
                stats.counted += len(rows)
                stats.requests += 1
                stats.latencies.append(done - started)
        db.close()
        return stats
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

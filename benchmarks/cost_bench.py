"""What the workloads users run cost on DynamoDB, billed as AWS bills it, per entity (part of `make bench`).

Each workload runs the whole local pipeline as `make demo` does: `footfall serve` on a fresh embedded database
(collector workers, stream runner, scheduler), each of its processes billing its own requests in-process
(`benchmarks/meter.py`, `meter_this_process`, loaded by `benchmarks/metered/sitecustomize.py`): what it costs is
what AWS would bill for the same requests, and nothing stands between the pipeline and its database. The stream
runner batches as the event source mapping in `infra/template.yaml` does (BatchSize 1000,
MaximumBatchingWindowInSeconds 1): at a steady rate, about one invocation a second. Traffic comes from
`shared.simulate` (the demo's simulator, the same corpus and wire formats):

- bulk: `generate` — N customers over 14 days of history, sent as fast as the collector answers;
- live: then, on the same stack, `live` traffic at a steady rate (a third of visits are the history's customers
  coming back);
- worst: on a fresh stack, `live` traffic with no history and a thousand visits at once, so that nearly every
  event is a new visitor's (little for processing to coalesce), at the same rate.

After the traffic a marker event is sent; processing has caught up when the marker's profile exists and the stream holds
no record after the runner's checkpoint (nothing queued, no invocation in flight). Within the timeout the workload is
billed; otherwise it is FAILED, not a number. Images for the bill are read through a second, unmetered client; two
processes writing one item at once could be billed from the other's image (the pipeline's functions seldom write one
item at the same moment). The ledger is reset once the stack is up, so setup (table, default source, starter segments)
is not billed; the marker is an accepted event and counted as one. Events per workload = the event items the collector
stored (the ledger's `event/<source>` writes), checked equal to what the collector's answers account for (accepted batch
events + recorded opens and clicks + the marker).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import meter as metering

from shared import simulate
from shared.local.stack import read_info
from shared.local.streams import CHECKPOINT_FILE, FOLD_CHECKPOINT_FILE
from shared.storage.dynamo import DynamoTrackingStore

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
TABLE = "footfall"
BATCH_WINDOW = 1.0
FOLD_WINDOW = 10.0
"""The fold mapping's MaximumBatchingWindowInSeconds in infra/template.yaml (seconds): the local fold runs that long
after the first record since its last run, as the mapping invokes at the end of the window its first record
opened."""
QUALIFY = {"event": "src", "profile": "slot"}
"""Bill event items by source: `event/footfall` are the Audience Entered/Exited events processing writes; customer
items that are not a customer's apart: `profile/pointer` (an identity attached to another customer: the link) and
`profile/claimed` (a new customer's empty item, written so an identity can be attached to it first)."""
PROCESSING_EVENTS = "event/footfall"
COLLECT_ENTITIES = ("failed", "failed_day")
"""Besides `event/<source>`: what the collector writes."""
COLLECT_READ_ENTITIES = ("pk:ID", "pk:IDH", "erasure_epoch", "forgotten")
"""What the collector's one consistent read lands on: event keys not stored yet (`pk:ID`), the erasure epoch, the
identities' suppression marks (`pk:IDH` when absent, `forgotten` when present). Processing reads them too (absent
identity links are `pk:ID`, its suppression check the rest): their sum bounds the collect path's reads from above."""

TARGETS = {
    "collect": 1.0,
    "bulk": 1.5,
    "live": 2.0,
    "steady": 2.0,
    "worst": 4.0,
    "reads": 2.0,
    "round_trips": 2.0,
}
"""WU per event from DESIGN.md ("Numbers to reach"); `steady` and `worst` are the issue's bounds at a steady
200 events/s and for mostly new visitors."""
LIVE_VISITS = 6
"""Visits under way at once in `live` (`simulate.live`'s default)."""


@dataclass
class Workload:
    name: str
    description: str
    events: int
    """Event items the collector stored (from the ledger), the marker included: every batch event answered
    `accepted`, and every e-mail open (pixel) and click (redirect) recorded."""
    answered: int
    """What the collector's answers account for: accepted + opens + clicks + the marker (`events` must agree)."""
    send_seconds: float
    lag: float | None
    """Seconds after the traffic until processing had caught up; None: not within the timeout (FAILED)."""
    ledger: metering.Ledger
    rejected: int = 0

    @property
    def caught_up(self) -> bool:
        return self.lag is not None

    @property
    def wu(self) -> float:
        return self.ledger.wu / self.events

    @property
    def ru(self) -> float:
        return self.ledger.ru / self.events

    @property
    def collect_wu(self) -> float:
        lines = [
            line
            for name, line in self.ledger.entities.items()
            if (name.startswith("event/") and name != PROCESSING_EVENTS) or name in COLLECT_ENTITIES
        ]
        return sum(line.total_wu for line in lines) / self.events

    @property
    def customer_batches(self) -> int:
        """One customer's share of one processing batch: each is one profile write (merges add their tombstone;
        pointers and claimed empty items are billed apart, `QUALIFY`)."""
        line = self.ledger.entities.get("profile")
        return line.writes - line.failed_conditions if line else 0

    @property
    def processing_requests(self) -> int:
        """DynamoDB data requests the process function made (its User-Agent says `footfall/process`)."""
        made = self.ledger.components.get("process", {})
        return sum(count for operation, count in made.items() if operation in metering.WRITES | metering.READS)

    @property
    def round_trips(self) -> float:
        """Processing's requests per customer-batch (the issue's bound: 2)."""
        return self.processing_requests / max(self.customer_batches, 1)

    @property
    def collect_ru(self) -> float:
        """RU per event of the collect path, at most (`COLLECT_READ_ENTITIES`; duplicates found are left out)."""
        return (
            sum(line.ru for name, line in self.ledger.entities.items() if name in COLLECT_READ_ENTITIES) / self.events
        )


# --- processes ------------------------------------------------------------------------------------------------------


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass
class MeteredStack:
    data_dir: Path
    meter: metering.MeterDumps
    """The ledgers of the stack's processes (what the pipeline's requests cost)."""
    target: simulate.Target
    store: DynamoTrackingStore
    """On an unmetered client of its own: the bench's checks are not billed."""
    feed: Any
    """The embedded database's change feed, read unmetered (where the stream runners' checkpoints stand)."""

    def reset(self) -> None:
        self.meter.reset()

    def measure(
        self, name: str, description: str, traffic: Callable[[simulate.Target], simulate.Stats], *, timeout: float
    ) -> Workload:
        """Wait for the stack to be idle (setup or the workload before read by both of the stream's readers, so the
        fold's window opens with this traffic), reset the ledger, run the traffic, wait for processing, and bill it."""
        self._caught_up_before(timeout)
        self.reset()
        started = time.monotonic()
        stats = traffic(self.target)
        sent = time.monotonic()
        marker_ok = self._send_marker()
        lag = self._caught_up(sent, timeout) if marker_ok else None
        if lag is not None and not self._folded(timeout):
            lag = None  # counters never caught up: reported as not caught up
        ledger = self.meter.ledger()
        stored = sum(
            line.writes - line.failed_conditions
            for entity, line in ledger.entities.items()
            if entity.startswith("event/") and entity != PROCESSING_EVENTS
        )
        return Workload(
            name=name,
            description=description,
            events=stored,
            answered=stats.accepted + stats.opens + stats.clicks + int(marker_ok),
            send_seconds=sent - started,
            lag=lag,
            ledger=ledger,
            rejected=stats.rejected + stats.not_stored,
        )

    def _send_marker(self) -> bool:
        self.marker = f"bench-marker-{uuid.uuid4().hex[:10]}"
        event = simulate.SimEvent(
            at=datetime.now(UTC),
            route=simulate.Route.BATCH,
            payload={"type": "track", "userId": self.marker, "event": "Bench Marker", "messageId": uuid.uuid4().hex},
            person=self.marker,
        )
        stats = simulate.send([event], self.target)
        return stats.accepted == 1

    def _caught_up(self, since: float, timeout: float) -> float | None:
        while time.monotonic() - since < timeout:
            if self.store.get_profiles([f"u:{self.marker}"]) and self._stream_drained():
                return time.monotonic() - since
            time.sleep(0.5)
        return None

    def _caught_up_before(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not (self._stream_drained() and self._read_to_end(FOLD_CHECKPOINT_FILE)):
            if time.monotonic() > deadline:
                raise RuntimeError("the stack did not go idle before the workload")
            time.sleep(0.5)

    def _stream_drained(self) -> bool:
        return self._read_to_end(CHECKPOINT_FILE)

    def _folded(self, timeout: float) -> bool:
        """Wait for the counter fold (the stream's second reader, every few seconds) to read the stream to its end:
        its writes are part of the bill (its own counter writes reach the stream too: read at its next run)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._read_to_end(FOLD_CHECKPOINT_FILE):
                return True
            time.sleep(0.5)
        return False

    def _read_to_end(self, checkpoint: str) -> bool:
        try:
            positions = json.loads((self.data_dir / checkpoint).read_text())
        except (OSError, ValueError):
            return False
        for shard in self.feed.shards():
            if self.feed.read(shard["ShardId"], positions.get(shard["ShardId"]), 1):
                return False
        return True


@contextlib.contextmanager
def metered_stack(workers: int = 2) -> Iterator[MeteredStack]:
    """`footfall serve` on a fresh embedded database, each of its processes metered in-process; stopped on exit."""
    from shared.storage.sqlite.engine import SqliteClient
    from shared.storage.sqlite.feed import SqliteChangeFeed

    data_dir = Path(tempfile.mkdtemp(prefix="footfall-bench-cost-"))
    meter_dir = data_dir / "meter"
    meter_dir.mkdir()
    env = dict(os.environ)
    env["FOOTFALL_STREAM_BATCH_WINDOW"] = str(BATCH_WINDOW)
    env["FOOTFALL_FOLD_WINDOW"] = str(FOLD_WINDOW)
    env["FOOTFALL_METER_DIR"] = str(meter_dir)
    env["FOOTFALL_METER_QUALIFY"] = ",".join(f"{entity}={attribute}" for entity, attribute in QUALIFY.items())
    paths = [str(ROOT / "benchmarks" / "metered"), str(ROOT / "benchmarks"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    serve = None
    try:
        footfall = Path(sys.executable).parent / "footfall"
        serve_dir = data_dir / "serve"
        port = _free_port()
        command = [str(footfall), "serve", "--data-dir", str(serve_dir), "--host", HOST, "--port", str(port)]
        command += ["--workers", str(workers)]
        serve = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=(data_dir / "serve.log").open("w"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 90
        while read_info(serve_dir) is None:
            if serve.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"footfall serve did not start: {(data_dir / 'serve.log').read_text()[-600:]}")
            time.sleep(0.1)
        client = SqliteClient(serve_dir / "footfall.db")
        store = DynamoTrackingStore(TABLE, client=client)
        target = simulate.local_target(serve_dir, find_source=store.get_source)
        yield MeteredStack(serve_dir, metering.MeterDumps(meter_dir), target, store, SqliteChangeFeed(client, TABLE))
    finally:
        if serve is not None:
            with contextlib.suppress(Exception):
                _stop(serve)
        shutil.rmtree(data_dir, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


# --- the workloads --------------------------------------------------------------------------------------------------


def _timed(seconds: float) -> threading.Event:
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.daemon = True
    timer.start()
    return stop


def measure(
    *,
    customers: int,
    rate: float,
    seconds: float,
    worst_concurrent: int,
    worst_seconds: float,
    steady_rate: float = 200.0,
    steady_seconds: float = 10.0,
    seed: int = 11,
) -> list[Workload]:
    """The four workloads (bulk, live and steady on one stack, worst on a fresh one)."""
    now = datetime.now(UTC)
    run = "cost"  # the same traffic every run (each stack has a fresh database): runs differ by timing alone
    results = []
    with metered_stack() as stack:
        results.append(
            stack.measure(
                "bulk",
                f"14 days of history: {customers:,} simulated customers, sent as fast as the collector answers",
                lambda target: simulate.send(simulate.generate(customers, 14, seed, now), target),
                timeout=600,
            )
        )
        print(f"  bulk: {_line(results[-1])}", flush=True)
        results.append(
            stack.measure(
                "live",
                f"live traffic at {rate:g} events/s for {seconds:g} s on top of that history "
                f"(simulate.live, {LIVE_VISITS} visits at once)",
                lambda target: simulate.send(
                    simulate.live(seed, customers=customers, clock=lambda: datetime.now(UTC), run=run),
                    target,
                    rate=rate,
                    stop=_timed(seconds),
                ),
                timeout=600,
            )
        )
        print(f"  live: {_line(results[-1])}", flush=True)
        visits = max(LIVE_VISITS, round(LIVE_VISITS * steady_rate / rate))  # each visit as fast as in `live`
        results.append(
            stack.measure(
                "steady",
                f"live traffic at a steady {steady_rate:g} events/s for {steady_seconds:g} s on top of that "
                f"(simulate.live, {visits} visits at once: each as fast as in live; one processing batch a second)",
                lambda target: simulate.send(
                    simulate.live(
                        seed + 2, customers=customers, clock=lambda: datetime.now(UTC), run=f"{run}s", concurrent=visits
                    ),
                    target,
                    rate=steady_rate,
                    stop=_timed(steady_seconds),
                ),
                timeout=600,
            )
        )
        print(f"  steady: {_line(results[-1])}", flush=True)
    with metered_stack() as stack:
        results.append(
            stack.measure(
                "worst",
                f"mostly new visitors: live traffic with no history, {worst_concurrent} visits at once, "
                f"{rate:g} events/s for {worst_seconds:g} s",
                lambda target: simulate.send(
                    simulate.live(
                        seed + 1, customers=0, clock=lambda: datetime.now(UTC), run=run, concurrent=worst_concurrent
                    ),
                    target,
                    rate=rate,
                    stop=_timed(worst_seconds),
                ),
                timeout=300,
            )
        )
        print(f"  worst: {_line(results[-1])}", flush=True)
    return results


def _line(workload: Workload) -> str:
    if not workload.caught_up:
        return f"{workload.events:,} events, FAILED: processing did not catch up"
    return (
        f"{workload.events:,} events in {workload.send_seconds:.0f} s, caught up {workload.lag:.1f} s later: "
        f"{workload.wu:.2f} WU/event ({workload.collect_wu:.2f} collect), "
        f"{workload.ru:.2f} RU/event (collect at most {workload.collect_ru:.2f})"
    )


def ledger_table(workload: Workload) -> list[str]:
    """Markdown: entity · item writes · index writes · WU · WU/event · RU/event."""
    lines = [
        f"#### {workload.name}: {workload.description}",
        "",
        f"{workload.events:,} events stored (batch events accepted, e-mail opens and clicks recorded, the marker), "
        f"sent in {workload.send_seconds:.0f} s; "
        + (
            f"processing caught up {workload.lag:.1f} s after the traffic."
            if workload.caught_up
            else "**FAILED**: processing did not catch up within the timeout; the figures below are not a result."
        ),
        "",
        "| entity | item writes | index writes | WU | WU/event | reads | RU/event |",
        "|---|---|---|---|---|---|---|",
    ]
    events = max(workload.events, 1)
    rows = sorted(workload.ledger.entities.items(), key=lambda pair: (-pair[1].total_wu, -pair[1].ru, pair[0]))
    for name, line in rows:
        lines.append(
            f"| {name} | {line.writes:,} | {line.index_writes:,} | {line.total_wu:,.0f} | {line.total_wu / events:.3f} "
            f"| {line.reads:,} | {line.ru / events:.3f} |"
        )
    ledger = workload.ledger
    writes = sum(x.writes for x in ledger.entities.values())
    index_writes = sum(x.index_writes for x in ledger.entities.values())
    reads = sum(x.reads for x in ledger.entities.values())
    lines.append(
        f"| **total** | {writes:,} | {index_writes:,} | {ledger.wu:,.0f} | **{ledger.wu / events:.3f}** "
        f"| {reads:,} | **{ledger.ru / events:.3f}** |"
    )
    failed = sum(x.failed_conditions for x in ledger.entities.values())
    by_function = {name or "(unnamed)": dict(sorted(ops.items())) for name, ops in sorted(ledger.components.items())}
    lines += [
        "",
        f"Requests: {json.dumps(dict(sorted(ledger.operations.items())))}; failed conditions billed: {failed:,}; "
        f"rejected (not billed): {json.dumps(ledger.rejected)}; unknown operations: {json.dumps(ledger.unknown)}; "
        f"replayed reads that disagreed: {ledger.replay_mismatches}.",
        "",
        f"Round trips: the process function made {workload.processing_requests:,} requests for "
        f"{workload.customer_batches:,} customer-batches (profile writes), {workload.round_trips:.2f} each; by "
        f"function and operation: {json.dumps(by_function)}.",
        "",
    ]
    return lines


def problems(workloads: list[Workload]) -> list[str]:
    """Why the run cannot be reported as figures (empty when it can)."""
    found = []
    for workload in workloads:
        if not workload.caught_up:
            found.append(f"{workload.name}: processing did not catch up")
        if workload.ledger.unknown:
            found.append(f"{workload.name}: operations the meter cannot bill: {workload.ledger.unknown}")
        if workload.rejected:
            found.append(f"{workload.name}: {workload.rejected} events not accepted")
        if workload.events != workload.answered:
            found.append(
                f"{workload.name}: {workload.events} event items stored, but the answers account for "
                f"{workload.answered} (accepted + opens + clicks + marker)"
            )
    return found


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    scale = {"customers": int(os.environ.get("CUSTOMERS", "100")), "rate": 50.0, "seconds": 20.0}
    for result in measure(**scale, worst_concurrent=1000, worst_seconds=10.0):
        print("\n".join(ledger_table(result)))

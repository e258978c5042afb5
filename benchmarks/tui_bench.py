"""TUI figures for `make bench`: DynamoDB requests, read units and time of each screen's reads, on realistic data in
the embedded SQLite database; and the `--check` path the product runs (`recompute`).

The table is created from `TABLE_DEFINITION` (stream included) in a fresh database file, and filled with what the
pipeline leaves behind for synthetic shop traffic:
- every event item, every customer's profile folded from their events by processing's own code, their identity
  links, each customer's analytics cells summed into the counter items (batch writes of the finished items);
- a heavy merged customer: three identities (two devices, then a login) with thousands of events, and the
  tombstone of the profile merged into it;
- segment memberships of *every* customer under the starter rules, written by the product's own path
  (`evaluate_customers` → conditional membership writes and the due list; `record_membership_changes` → audience
  events, history items and size counters): segment sizes and history in the thousands;
- hundreds of failed events over the last days; a full live feed (more live items than the screen reads).
The fill's own change records are dropped once it is done (as if processed).

Each screen's data-source reads (`tui.data.StoreDataSource`, what the screen calls when it opens) are timed (median
of 3) with requests counted by a botocore-style hook, the file opened directly (as `footfall tui` opens `footfall
serve`'s default); one more pass through `benchmarks/meter.py` bills their read units.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.domain import analytics
from shared.domain.events import CallType, TrackingEvent, format_timestamp
from shared.domain.failures import FailedEvent, new_failure_id
from shared.domain.identity import split_identity
from shared.domain.profiles import CustomerProfile, apply_events
from shared.local.stack import STARTERS as SEGMENT_STARTERS
from shared.ports import Link, StoredProfile
from shared.services.analytics import STARTERS as ANALYTICS_STARTERS

ROOT = Path(__file__).resolve().parent.parent
NAMES = ["page", "Product Viewed", "Product Viewed", "Product Added", "Checkout Started", "Order Completed"]
SCREEN_REQUEST_TARGET = 10
SCREEN_MS_TARGET = 200.0
"""DESIGN.md: any TUI screen < 200 ms locally through the real data source."""
CHECK_TARGET_SECONDS = 2.0
TABLE = "footfall"
HEAVY = "u:heavy"
HEAVY_IDENTITIES = ("u:heavy", "a:heavy-phone", "a:heavy-laptop")
HEAVY_EVENTS_EACH = 1_000
FAILED_EVENTS = 400
LIVE_ITEMS = 40
CHUNK = 1_000


@dataclass
class ScreenFigure:
    screen: str
    requests: int
    ms: float
    ru: float = 0.0
    path: str = "SQLite"


def _events(identity: str, rng: random.Random, now: datetime, count: int, tag: str) -> list[TrackingEvent]:
    kind, value = split_identity(identity)
    moment = now - timedelta(days=rng.random() * 30)
    events = []
    for index in range(count):
        moment += timedelta(seconds=rng.expovariate(1 / 600))
        name = rng.choice(NAMES)
        call = CallType.PAGE if name == "page" else CallType.TRACK
        properties = {"revenue": 40 + index % 90} if name == "Order Completed" else {"product_id": f"p{index % 7}"}
        events.append(
            TrackingEvent(
                source_id="web",
                message_id=f"m{tag}-{index}",
                type=call,
                timestamp=min(moment, now),
                received_at=min(moment, now),
                user_id=value if kind == "u" else None,
                anonymous_id=value if kind == "a" else None,
                event=None if call is CallType.PAGE else name,
                properties=properties,
                traits={},
            )
        )
    return events


@dataclass
class Filled:
    info: dict[str, Any]
    by_customer: dict[str, list[TrackingEvent]]
    """Every customer's events (the check path's input, for its in-memory baseline)."""


class _Batches:
    """Items put 25 to a `BatchWriteItem`, as they come."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.pending: list[dict[str, Any]] = []

    def put(self, item: dict[str, Any]) -> None:
        self.pending.append({"PutRequest": {"Item": item}})
        if len(self.pending) == 25:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.client.batch_write_item(RequestItems={TABLE: self.pending})
            self.pending = []


def fill(client: Any, store: Any, customers: int, events_each: int, now: datetime) -> Filled:
    """Put what the pipeline would have stored for this traffic into the table (see the module docstring)."""
    from shared.services.segments import evaluate_customers, rules_of
    from shared.storage import items
    from shared.storage.dynamo import serialize

    rng = random.Random(5)
    document = json.loads(ANALYTICS_STARTERS.read_text())
    store.put_analytics_definitions(document)
    definitions = analytics.parse_definitions(document)
    rules = rules_of(store.list_segments())
    counters: analytics.Cells = {}
    by_customer: dict[str, list[TrackingEvent]] = {}
    batches = _Batches(client)
    put = batches.put
    people = [(f"u:c{n}", (f"u:c{n}",)) for n in range(customers)] + [(HEAVY, HEAVY_IDENTITIES)]
    transitions = 0
    for start in range(0, len(people), CHUNK):
        chunk: dict[str, StoredProfile] = {}
        for customer_id, identities in people[start : start + CHUNK]:
            heavy = customer_id == HEAVY
            events = []
            for identity in identities:
                count = HEAVY_EVENTS_EACH if heavy else events_each
                events += _events(identity, rng, now, count, tag=identity)
            events.sort(key=lambda e: e.timestamp)
            for event in events:
                put(serialize(items.event_to_item(event)))
            profile = apply_events(CustomerProfile(customer_id=customer_id, identities=identities), events)
            stored = StoredProfile(profile, version=1)
            put(serialize(items.profile_to_item(stored)))
            for identity in identities:
                put(serialize(items.link_item(Link(identity, customer_id, events[0].message_id, now.isoformat()))))
            analytics.add(counters, analytics.customer_cells(customer_id, events, definitions, now=now))
            by_customer[customer_id] = events
            chunk[customer_id] = stored
        batches.flush()
        transitions += _memberships(store, chunk, by_customer, rules, now, evaluate_customers)
    # the profile merged into the heavy customer: a tombstone pointing at it
    merged = CustomerProfile(customer_id=HEAVY_IDENTITIES[2], identities=(HEAVY_IDENTITIES[2],), merged_into=HEAVY)
    put(serialize(items.profile_to_item(StoredProfile(merged, version=2))))
    for (pk, sk), counts in counters.items():
        put(
            {
                "PK": {"S": pk},
                "SK": {"S": sk},
                "entity": {"S": "counter"},
                **{a: {"N": str(n)} for a, n in counts.items()},
            }
        )
    batches.flush()
    _failed_and_live(store, now)
    return Filled({"counter_items": len(counters), "transitions": transitions}, by_customer)


def _memberships(
    store: Any,
    chunk: dict[str, StoredProfile],
    by_customer: dict[str, list[TrackingEvent]],
    rules: list[Any],
    now: datetime,
    evaluate_customers: Callable[..., Any],
) -> int:
    """Every rule on every customer of the chunk, written as processing writes it (memberships, due list, audience
    events, history, sizes)."""
    from shared.services.segments import MembershipChange, record_membership_changes

    versions = {rule.id: rule.version for rule in rules}
    found = evaluate_customers(
        store,
        list(chunk),
        rules,
        now=now,
        profiles=chunk,
        events={c: by_customer[c] for c in chunk},
        memberships={c: {} for c in chunk},
    )
    at = format_timestamp(now)
    changes = [
        MembershipChange(
            t.segment_id, t.customer_id, t.entered, at, versions[t.segment_id], t.reason, split_identity(t.customer_id)
        )
        for t in found
    ]
    record_membership_changes(store, changes)
    return len(changes)


def _failed_and_live(store: Any, now: datetime) -> None:
    failures = [
        FailedEvent(
            new_failure_id(now - timedelta(hours=number * 0.25), f"b{number:05d}"),
            now - timedelta(hours=number * 0.25),
            "POST /v1/batch",
            "properties.revenue: not a number",
            400,
            json.dumps({"type": "track", "event": "Order Completed", "properties": {"revenue": "n/a"}}).encode(),
        )
        for number in range(FAILED_EVENTS)
    ]
    store.put_failed(failures)
    for number in range(LIVE_ITEMS):
        feed = [
            {
                "at": (now - timedelta(seconds=number * 50 + index)).isoformat(),
                "event": NAMES[index % len(NAMES)],
                "customer": f"u:c{index}",
                "source": "web",
                "channel": "web",
                "message_id": f"live-{number}-{index}",
            }
            for index in range(50)
        ]
        store.put_live(f"{number:06d}", feed, now=now.timestamp() - number)


def screens(source: Any, segment: str, now: datetime) -> dict[str, Callable[[], Any]]:
    return {
        "Overview": lambda: source.overview(now=now),
        "Customers": lambda: source.customers(limit=50),
        "Customer detail": lambda: (source.customer("u:c7", now=now), source.timing("u:c7")),
        "Customer detail (heavy merged)": lambda: (source.customer(HEAVY, now=now), source.timing(HEAVY)),
        "Segments": lambda: source.segments(now=now),
        "Segment detail": lambda: (source.segment(segment, now=now), _first(source.segment_members(segment), 50)),
        "Funnels": lambda: (
            source.funnels(),
            source.funnel("purchase", start=(now - timedelta(days=29)).date(), end=now.date()),
        ),
        "Retention": lambda: source.retention(by="day", cumulative=False, today=now.date()),
        "Live": lambda: source.live(limit=100),
        "Failed": lambda: source.failed(limit=50, now=now),
    }


def time_screens(
    client: Any, side_client: Any, source: Any, segment: str, now: datetime, path: str
) -> list[ScreenFigure]:
    """Median of 3 timed reads per screen (requests counted), then one metered read for its read units."""
    from meter import Meter

    requests = {"n": 0}

    def count(**_: Any) -> None:
        requests["n"] += 1

    client.meta.events.register("before-call.dynamodb", count)
    figures = []
    for name, read in screens(source, segment, now).items():
        times, counts = [], []
        for _ in range(3):
            requests["n"] = 0
            started = time.perf_counter()
            read()
            times.append(time.perf_counter() - started)
            counts.append(requests["n"])
        figures.append(ScreenFigure(name, max(counts), statistics.median(times) * 1000, path=path))
    client.meta.events.unregister("before-call.dynamodb", count)
    meter = Meter.for_client(client, side_client)
    for figure, read in zip(figures, screens(source, segment, now).values(), strict=True):
        meter.reset()
        read()
        figure.ru = meter.snapshot().ru
        print(
            f"  {path:10} {figure.screen:31} {figure.requests:>4} requests {figure.ms:8.1f} ms {figure.ru:8.1f} RU",
            flush=True,
        )
    return figures


@dataclass
class CheckFigure:
    seconds: float
    requests: int
    baseline_seconds: float
    customers: int
    events: int


def time_check(client: Any, store: Any, filled: Filled, now: datetime) -> CheckFigure:
    """`services.analytics.recompute` (what `--check` runs) against its pure part on the same events in memory."""
    from shared.services import analytics as analytics_service

    requests = {"n": 0}

    def count(**_: Any) -> None:
        requests["n"] += 1

    client.meta.events.register("before-call.dynamodb", count)
    started = time.perf_counter()
    analytics_service.recompute(store, now=now)
    seconds = time.perf_counter() - started
    client.meta.events.unregister("before-call.dynamodb", count)
    definitions = analytics_service.definitions_of(store)
    started = time.perf_counter()
    analytics.recompute(filled.by_customer, definitions, now=now)
    baseline = time.perf_counter() - started
    events = sum(len(v) for v in filled.by_customer.values())
    print(
        f"  check path: recompute {seconds:.1f} s, {requests['n']:,} requests; in memory {baseline:.2f} s", flush=True
    )
    return CheckFigure(seconds, requests["n"], baseline, len(filled.by_customer), events)


def measure(customers: int = 20_000, events_each: int = 10) -> tuple[list[ScreenFigure], dict[str, Any]]:
    from shared.services.segments import apply_segments
    from shared.storage.dynamo import DynamoTrackingStore
    from shared.storage.schema import TABLE_DEFINITION
    from shared.storage.sqlite.engine import SqliteClient
    from tui.data import StoreDataSource

    now = datetime.now(UTC).replace(microsecond=0)
    data_dir = Path(tempfile.mkdtemp(prefix="footfall-bench-tui-"))
    client = SqliteClient(data_dir / "footfall.db")
    side = SqliteClient(data_dir / "footfall.db")  # the meter's own reads, unhooked
    try:
        client.create_table(TableName=TABLE, **TABLE_DEFINITION)
        store = DynamoTrackingStore(TABLE, client=client)
        apply_segments(store, json.loads(SEGMENT_STARTERS.read_text()), source="starters", now=now, customers=[])
        began = time.perf_counter()
        filled = fill(client, store, customers, events_each, now)
        info = dict(filled.info)
        info["fill_seconds"] = time.perf_counter() - began
        client.trim_feed(now=time.time() + 2 * 86400)  # the fill's change records: as if processed already
        info["items"] = client.read("SELECT COUNT(*) FROM items WHERE tbl = ?", (TABLE,))[0][0]
        info["stream"] = client.describe_table(TableName=TABLE)["Table"].get("StreamSpecification")
        info["sqlite_bytes"] = sum(p.stat().st_size for p in data_dir.iterdir() if p.name.startswith("footfall.db"))
        source = StoreDataSource(store)
        sizes = {row.segment_id: row.size or 0 for row in source.segments(now=now)}
        segment = max(sizes, key=lambda s: sizes[s])
        info["segment"] = (segment, sizes[segment])
        info["segment_sizes"] = sizes
        figures = time_screens(client, side, source, segment, now, "SQLite")
        info["check"] = time_check(client, store, filled, now)
    finally:
        side.close()
        client.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    return figures, info


def _first(values: Any, count: int) -> list[Any]:
    found = []
    for value in values:
        found.append(value)
        if len(found) == count:
            break
    return found


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "benchmarks"))
    measure(int(sys.argv[1]) if len(sys.argv) > 1 else 2_000)

"""TUI figures for `make bench`: DynamoDB requests, read units and time of each screen's reads, on realistic data in
the embedded SQLite database; and the `--check` path the product runs (`recompute`).

The table is created from `TABLE_DEFINITION` (stream included) in a fresh database file, and filled (`fill`, which
`scale_bench.py` runs at a larger scale) with what the pipeline leaves behind for synthetic shop traffic:
- every event item, every customer's profile folded from their events by processing's own code, their identity
  links (restored in batches: `SqliteClient.restore_items`, no change record);
- a heavy merged customer: three identities (two devices, each then logged in: an identify naming both ids) with
  thousands of events, and the tombstone of the profile merged into it;
- segment memberships of *every* customer under the starter rules, written by the product's own path
  (`evaluate_customers` → the customer items' segments and the due list; `follow_customer_items` → audience
  events, history and member items), then each customer's analytics cells (`update_customers`);
- the counter items: each customer's cells and each membership's size step (`size_cells`), summed as the fold sums
  them from those items' stream records (so the independent oracle, `tests/oracle`, audits the fill right);
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
from shared.domain.cells import size_cells
from shared.domain.events import CallType, TrackingEvent, format_timestamp
from shared.domain.failures import FailedEvent, new_failure_id
from shared.domain.identity import split_identity
from shared.domain.profiles import CustomerProfile, apply_events
from shared.local.stack import STARTERS as SEGMENT_STARTERS
from shared.ports import Link, StoredProfile
from shared.services.analytics import STARTERS as ANALYTICS_STARTERS
from shared.storage import items
from shared.storage.analytics import to_items

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
    path: str = "in-process"


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


Write = Callable[[list[dict[str, Any]]], None]
"""Puts plain items (as `shared.storage.items` builds them) straight into the table: no stream record, as if
processed long ago (`restore_writer`: `SqliteClient.restore_items`)."""


def restore_writer(client: Any) -> Write:
    """Items restored into the embedded database (`SqliteClient.restore_items`: no change record)."""
    from shared.storage.dynamo import serialize

    def write(rows: list[dict[str, Any]]) -> None:
        client.restore_items(TableName=TABLE, Items=[serialize(row) for row in rows])

    return write


@dataclass
class Built:
    """One customer as the pipeline leaves it: their events, their folded profile, and the items of both plus the
    identity links."""

    customer_id: str
    events: list[TrackingEvent]
    stored: StoredProfile
    rows: list[dict[str, Any]]


def build_customer(number: int, rng: random.Random, now: datetime, events_each: int) -> Built:
    """Customer `u:c<number>` with `events_each` events (one identity, so no link to make but their own)."""
    customer_id = f"u:c{number}"
    events = _events(customer_id, rng, now, events_each, tag=customer_id)
    return _built(customer_id, (customer_id,), events, now)


def build_heavy(rng: random.Random, now: datetime) -> Built:
    """The heavy merged customer: thousands of events on two devices, then a login on each (an identify naming
    both ids, which is what links a device to the user)."""
    events = []
    for identity in HEAVY_IDENTITIES:
        events += _events(identity, rng, now, HEAVY_EVENTS_EACH, tag=identity)
    user = split_identity(HEAVY)[1]
    for number, identity in enumerate(HEAVY_IDENTITIES[1:]):
        last = max(e.timestamp for e in events if e.anonymous_id == split_identity(identity)[1])
        events.append(
            TrackingEvent(
                source_id="web",
                message_id=f"m{HEAVY}-login-{number}",
                type=CallType.IDENTIFY,
                timestamp=last,
                received_at=last,
                user_id=user,
                anonymous_id=split_identity(identity)[1],
                traits={"email": "heavy@example.com"},
            )
        )
    events.sort(key=lambda e: e.timestamp)
    return _built(HEAVY, HEAVY_IDENTITIES, events, now)


def _built(customer_id: str, identities: tuple[str, ...], events: list[TrackingEvent], now: datetime) -> Built:
    profile = apply_events(CustomerProfile(customer_id=customer_id, identities=identities), events)
    stored = StoredProfile(profile, 1, segments={})  # as processing creates a customer: its item holds its segments
    rows = [items.event_to_item(event) for event in events]
    rows.append(items.profile_to_item(stored))
    rows += [items.link_item(Link(i, customer_id, events[0].message_id, now.isoformat())) for i in identities]
    return Built(customer_id, events, stored, rows)


@dataclass
class Filled:
    info: dict[str, Any]
    by_customer: dict[str, list[TrackingEvent]]
    """Every customer's events (the check path's input, for its in-memory baseline); empty unless kept."""
    customers: int = 0
    events: int = 0
    """Customers' own events (the audience events the segments' path writes are not counted)."""


def fill(
    write: Write,
    store: Any,
    customers: int,
    events_each: int,
    now: datetime,
    *,
    keep_events: bool = True,
    after_chunk: Callable[[int], None] | None = None,
) -> Filled:
    """Put what the pipeline would have stored for this traffic into the table (see the module docstring).

    Args:
        write: puts plain items (events, profiles, links, counters) straight into the table.
        keep_events: keep every customer's events in `Filled.by_customer` (the check path's baseline needs them).
        after_chunk: called after each chunk of customers is written, with the number written so far (the heavy
            one included).
    """
    from shared.services.segments import rules_of

    rng = random.Random(5)
    document = json.loads(ANALYTICS_STARTERS.read_text())
    store.put_analytics_definitions(document)
    definitions = analytics.parse_definitions(document)
    rules = rules_of(store.list_segments())
    counters: analytics.Cells = {}
    by_customer: dict[str, list[TrackingEvent]] = {}
    transitions = events = written = 0
    for start in range(0, customers + 1, CHUNK):
        numbers = range(start, min(start + CHUNK, customers))
        chunk = [build_customer(n, rng, now, events_each) for n in numbers]
        if start + CHUNK > customers:
            chunk.append(build_heavy(rng, now))
        write([row for built in chunk for row in built.rows])
        for built in chunk:
            analytics.add(counters, analytics.customer_cells(built.customer_id, built.events, definitions, now=now))
            events += len(built.events)
        changes = _evaluate(store, chunk, rules, definitions, now)
        for change in changes:  # the fold's size counters: what each membership record adds
            analytics.add(counters, size_cells(change.segment_id, 1 if change.entered else -1, change.at[:10]))
        transitions += len(changes)
        if keep_events:
            by_customer.update((built.customer_id, built.events) for built in chunk)
        written += len(chunk)
        if after_chunk is not None:
            after_chunk(written)
    # the profile merged into the heavy customer: a tombstone pointing at it
    merged = CustomerProfile(customer_id=HEAVY_IDENTITIES[2], identities=(HEAVY_IDENTITIES[2],), merged_into=HEAVY)
    write([items.profile_to_item(StoredProfile(merged, version=2))])
    write([counter_item(pk, sk, counts) for (pk, sk), counts in to_items(counters).items()])
    _failed_and_live(store, now)
    info = {"counter_items": len(counters), "transitions": transitions}
    return Filled(info, by_customer, customers + 1, events)


def counter_item(pk: str, sk: str, counts: dict[str, int]) -> dict[str, Any]:
    """A counter item as the fold leaves it."""
    return {"PK": pk, "SK": sk, "entity": "counter", **counts}


def _evaluate(store: Any, chunk: list[Built], rules: list[Any], definitions: Any, now: datetime) -> list[Any]:
    """What processing's evaluation writes for the chunk's customers: every rule on every customer (the customer
    item's segments and the due list), what the items' records make (audience events, history, member items),
    then their analytics cells. Returns the membership changes."""
    from shared.services.analytics import update_customers
    from shared.services.audiences import MembershipChange, follow_customer_items
    from shared.services.segments import evaluate_customers

    profiles = {built.customer_id: built.stored for built in chunk}
    events = {built.customer_id: built.events for built in chunk}
    versions = {rule.id: rule.version for rule in rules}
    found = evaluate_customers(store, list(profiles), rules, now=now, profiles=profiles, events=events)
    at = format_timestamp(now)
    changes = [
        MembershipChange(
            t.segment_id, t.customer_id, t.entered, at, versions[t.segment_id], t.reason, split_identity(t.customer_id)
        )
        for t in found
    ]
    follow_customer_items(store, [(changes, None)])
    decided = store.get_profiles(list(profiles))  # (the evaluation wrote the items that changed)
    update_customers(store, list(profiles), definitions, now=now, events=events, profiles=decided)
    return changes


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
    put_live_feed(store, now)


def put_live_feed(store: Any, now: datetime) -> None:
    """A full live feed as of `now` (its items expire an hour later)."""
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
    """Fill a fresh embedded database file and time every screen's reads on it, opened as `footfall tui` opens
    `footfall serve`'s default; then the check path."""
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
        filled = fill(restore_writer(client), store, customers, events_each, now)
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

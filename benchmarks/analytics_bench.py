"""Analytics figures for `make bench`: funnel report read cost at 10k/100k/1M events.

Read cost: the counter items processing keeps for the events (each customer's cells, summed: exactly what the
stream writes) are put into a fresh embedded database (SQLite, `footfall serve`'s default, opened in this process),
then a 30-day purchase-funnel report is read 5 times; requests are counted with a botocore-style hook.
The check path (`footfall funnels show --check` runs `services.analytics.recompute` over the stored events) is
measured by `tui_bench.py`, on its table of stored events.
"""

from __future__ import annotations

import json
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from shared.domain import analytics
from shared.domain.cells import FunnelCell
from shared.domain.events import CallType, TrackingEvent
from shared.services.analytics import STARTERS

STEPS = ["Product Viewed", "Product Added", "Checkout Started", "Order Completed"]
OTHER = ["page", "Email Opened", "Product Viewed"]
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
DAYS = 30
READ_REQUEST_TARGET = 10


@dataclass
class Figures:
    reads: dict[int, tuple[int, float, int]]
    """events → (requests per report, median ms, counter items)."""


def synthetic_rows(events: int, seed: int = 11) -> Iterator[tuple[str, float, str, str]]:
    """Shop-like rows: customers with ~10 events over 30 days, most stopping early in the funnel."""
    rng = random.Random(seed)
    start = (NOW - timedelta(days=DAYS)).timestamp()
    made = 0
    customer = 0
    while made < events:
        customer += 1
        moment = start + rng.random() * DAYS * 86400
        for _ in range(min(10, events - made)):
            moment += rng.expovariate(1 / 900)
            depth = rng.random()
            name = STEPS[0 if depth < 0.55 else 1 if depth < 0.75 else 2 if depth < 0.85 else 3]
            if rng.random() < 0.3:
                name = rng.choice(OTHER)
            made += 1
            yield f"c{customer}", moment, f"m{made}", name


def _event(row: tuple[str, float, str, str]) -> TrackingEvent:
    customer, moment, message, name = row
    at = datetime.fromtimestamp(moment, UTC)
    kind = CallType.PAGE if name == "page" else CallType.TRACK
    return TrackingEvent(
        source_id="web",
        message_id=message,
        type=kind,
        timestamp=at,
        received_at=at,
        user_id=customer,
        event=None if kind is CallType.PAGE else name,
    )


def counter_cells(rows: list[tuple[str, float, str, str]], definitions: analytics.Definitions) -> analytics.Cells:
    by_customer: dict[str, list[TrackingEvent]] = {}
    for row in rows:
        by_customer.setdefault(row[0], []).append(_event(row))
    total: analytics.Cells = {}
    for customer, events in by_customer.items():
        cells = analytics.customer_cells(customer, events, definitions, now=NOW)
        analytics.add(total, {k: v for k, v in cells.items() if isinstance(k, FunnelCell)})
    return total


def read_cost(cells: analytics.Cells, document: dict[str, Any]) -> tuple[int, float, int]:
    from shared.services.analytics import funnel_report
    from shared.storage.analytics import to_items
    from shared.storage.dynamo import DynamoTrackingStore
    from shared.storage.schema import TABLE_DEFINITION
    from shared.storage.sqlite.engine import SqliteClient

    data_dir = Path(tempfile.mkdtemp(prefix="footfall-bench-analytics-"))
    client = SqliteClient(data_dir / "footfall.db")
    try:
        client.create_table(TableName="bench", **TABLE_DEFINITION)
        store = DynamoTrackingStore("bench", client=client)
        store.put_analytics_definitions(document)
        counters = [
            {"PK": {"S": pk}, "SK": {"S": sk}, **{a: {"N": str(n)} for a, n in counts.items()}}
            for (pk, sk), counts in to_items(cells).items()
        ]
        for start in range(0, len(counters), 25):
            batch = [{"PutRequest": {"Item": item}} for item in counters[start : start + 25]]
            client.batch_write_item(RequestItems={"bench": batch})
        requests = {"n": 0}
        client.meta.events.register("before-call.dynamodb", lambda **_: requests.__setitem__("n", requests["n"] + 1))
        times = []
        for _ in range(5):
            requests["n"] = 0
            began = time.perf_counter()
            report = funnel_report(store, "purchase", start=(NOW - timedelta(days=DAYS)).date(), end=NOW.date())
            times.append(time.perf_counter() - began)
        assert report.steps[0].customers > 0
        return requests["n"], statistics.median(times) * 1000, len(cells)
    finally:
        client.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def measure(sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)) -> Figures:
    document = json.loads(STARTERS.read_text())
    definitions = analytics.Definitions(analytics.parse_definitions(document).funnels[:1], ())
    reads = {}
    for size in sizes:
        rows = list(synthetic_rows(size))
        reads[size] = read_cost(counter_cells(rows, definitions), document)
        print(f"  funnel report at {size:,} events: {reads[size][0]} requests, {reads[size][1]:.1f} ms", flush=True)
    return Figures(reads)


if __name__ == "__main__":
    measure()

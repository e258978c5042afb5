"""TUI figures for `make bench`: DynamoDB requests and time for each screen's reads at 100k customers, 1M events.

The table (moto in-process, with the embedded backend's partition indexes, as `footfall serve` runs it) is filled
with what the pipeline leaves behind for synthetic shop traffic: every event item, every customer's profile
(folded from their events by the same code as processing), each customer's analytics cells summed into the
counters, the starter segments with a membership and its history for a share of the customers, a live feed and
some failed events. Each screen's data-source reads (`tui.data.StoreDataSource`, what the screen calls when it
opens) are then timed (median of 3) and their requests counted with a botocore hook.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.domain import analytics
from shared.domain.events import CallType, TrackingEvent
from shared.domain.failures import FailedEvent, new_failure_id
from shared.domain.profiles import CustomerProfile, apply_events
from shared.local.stack import STARTERS as SEGMENT_STARTERS
from shared.ports import Link, StoredProfile
from shared.services.analytics import STARTERS as ANALYTICS_STARTERS

NAMES = ["page", "Product Viewed", "Product Viewed", "Product Added", "Checkout Started", "Order Completed"]
SCREEN_REQUEST_TARGET = 10
SCREEN_MS_TARGET = 500.0


@dataclass
class ScreenFigure:
    screen: str
    requests: int
    ms: float


def _events(customer: int, rng: random.Random, now: datetime, count: int) -> list[TrackingEvent]:
    moment = now - timedelta(days=rng.random() * 30)
    events = []
    for index in range(count):
        moment += timedelta(seconds=rng.expovariate(1 / 600))
        name = rng.choice(NAMES)
        kind = CallType.PAGE if name == "page" else CallType.TRACK
        properties = {"revenue": 40 + index} if name == "Order Completed" else {"product_id": f"p{index % 7}"}
        events.append(
            TrackingEvent(
                source_id="web",
                message_id=f"m{customer}-{index}",
                type=kind,
                timestamp=min(moment, now),
                received_at=min(moment, now),
                user_id=f"c{customer}",
                event=None if kind is CallType.PAGE else name,
                properties=properties,
                traits={},
            )
        )
    return events


def fill(table: Any, customers: int, events_each: int, now: datetime) -> dict[str, Any]:
    """Put what the pipeline would have stored for this traffic straight into moto's table."""
    from shared.storage import items
    from shared.storage.dynamo import serialize

    rng = random.Random(5)
    document = json.loads(ANALYTICS_STARTERS.read_text())
    definitions = analytics.parse_definitions(document)
    counters: analytics.Cells = {}
    put = table.put_item
    for number in range(customers):
        events = _events(number, rng, now, events_each)
        customer_id = f"u:c{number}"
        for event in events:
            put(serialize(items.event_to_item(event)))
        profile = apply_events(CustomerProfile(customer_id=customer_id, identities=(customer_id,)), events)
        put(serialize(items.profile_to_item(StoredProfile(profile, version=1))))
        put(serialize(items.link_item(Link(customer_id, customer_id, events[0].message_id, now.isoformat()))))
        analytics.add(counters, analytics.customer_cells(customer_id, events, definitions, now=now))
    for (pk, sk), counts in counters.items():
        put(
            {
                "PK": {"S": pk},
                "SK": {"S": sk},
                "entity": {"S": "counter"},
                **{a: {"N": str(n)} for a, n in counts.items()},
            }
        )
    return {"document": document, "counter_items": len(counters)}


def measure(customers: int = 100_000, events_each: int = 10) -> tuple[list[ScreenFigure], dict[str, Any]]:
    import boto3
    from moto import mock_aws
    from moto.dynamodb.models import dynamodb_backends

    from shared.local import accel
    from shared.services.segments import apply_segments
    from shared.storage.dynamo import DynamoTrackingStore
    from shared.storage.schema import TABLE_DEFINITION
    from tui.data import StoreDataSource

    accel.install()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_ACCOUNT_ID_ENDPOINT_MODE="disabled")
    now = datetime.now(UTC).replace(microsecond=0)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        definition = {k: v for k, v in TABLE_DEFINITION.items() if k != "StreamSpecification"}  # no stream: faster
        client.create_table(TableName="tui", **definition)
        table = dynamodb_backends["123456789012"]["us-east-1"].get_table("tui")
        began = time.perf_counter()
        info = fill(table, customers, events_each, now)
        store = DynamoTrackingStore("tui", client=client)
        store.put_analytics_definitions(info["document"])
        starters = json.loads(SEGMENT_STARTERS.read_text())
        apply_segments(
            store, starters, source="starters", now=now, customers=[f"u:c{n}" for n in range(0, customers, 50)]
        )
        store.put_live(
            "1",
            [
                {
                    "at": now.isoformat(),
                    "event": "page",
                    "customer": "u:c1",
                    "source": "web",
                    "channel": "web",
                    "message_id": "x",
                }
            ],
        )
        store.put_failed([FailedEvent(new_failure_id(now, "bench"), now, "POST /v1/track", "bad json", 400, b"{")])
        info["fill_seconds"] = time.perf_counter() - began
        info["items"] = sum(len(p) if isinstance(p, dict) else 1 for p in table.items.values())
        source = StoreDataSource(store)
        segment = store.list_segments()[0].id
        screens: dict[str, Callable[[], Any]] = {
            "Overview": lambda: source.overview(now=now),
            "Customers": lambda: source.customers(limit=50),
            "Customer detail": lambda: (source.customer("u:c7", now=now), source.timing("u:c7")),
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
        requests = {"n": 0}
        client.meta.events.register("before-call.dynamodb", lambda **_: requests.__setitem__("n", requests["n"] + 1))
        figures = []
        for name, read in screens.items():
            times, counts = [], []
            for _ in range(3):
                requests["n"] = 0
                started = time.perf_counter()
                read()
                times.append(time.perf_counter() - started)
                counts.append(requests["n"])
            figures.append(ScreenFigure(name, max(counts), statistics.median(times) * 1000))
            print(f"  {name:16} {max(counts):>3} requests  {statistics.median(times) * 1000:7.1f} ms", flush=True)
        return figures, info


def _first(values: Any, count: int) -> list[Any]:
    found = []
    for value in values:
        found.append(value)
        if len(found) == count:
            break
    return found


if __name__ == "__main__":
    import sys

    measure(int(sys.argv[1]) if len(sys.argv) > 1 else 2_000)

"""TUI fixtures: a moto table seeded through the real collector, stream processing, segments and analytics.

Seeding takes seconds, so the read-only Pilot tests share one seeded table per module (`world`); tests that
write (replay, new live events) get their own (`fresh_world`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from shared import wiring
from shared.domain.events import format_timestamp
from shared.local.stack import STARTERS
from shared.services.analytics import STARTERS as ANALYTICS_STARTERS
from shared.services.analytics import apply_definitions
from shared.services.collect import Collector
from shared.services.segments import apply_segments
from shared.storage.dynamo import DynamoTrackingStore, RetryPolicy
from shared.storage.schema import TABLE_DEFINITION
from tests.builders import a_source
from tests.conftest import TABLE
from tests.integration.conftest import ddb, store  # noqa: F401  (fixtures)
from tui.app import OperatorApp, make_app
from tui.data import StoreDataSource

FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "FOOTFALL_TABLE_NAME": TABLE,
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
}
"""What `tests.conftest.aws_credentials` sets for each test, for a fixture that outlives one test."""


@dataclass(frozen=True)
class Seeded:
    """What the seeded table holds (ids to look for on screen)."""

    abandoner: str
    """userId of a customer who added to cart 70 minutes ago and did not order: in `cart_abandoners`."""
    buyer: str
    """userId of a customer who viewed, carted, checked out and ordered for 600: a heavy spender."""
    browsers: list[str]
    """userIds of customers who only viewed products."""
    now: datetime
    """The clock for the app: just after the events."""
    abandoner_today: bool
    """Whether the abandoner's events (70 minutes before the seeding) fall on the app clock's day: not in the first
    70 minutes after midnight UTC, when today's counters and cohorts hold one customer fewer."""


@dataclass
class World:
    """A seeded table, and how to send more through the collector and the stream."""

    store: DynamoTrackingStore
    seeded: Seeded
    send: Callable[[list[dict[str, Any]]], None]
    """Ingest calls (Segment-shaped) as the collector does, then run the stream dry."""


def _track(user: str, event: str, message: str, *, ago: timedelta | None = None, **properties: Any) -> dict[str, Any]:
    call = {"type": "track", "userId": user, "event": event, "messageId": message, "properties": properties}
    if ago is not None:
        call["timestamp"] = format_timestamp(datetime.now(UTC) - ago)
    return call


def _stream(client: Any, table: DynamoTrackingStore, monkeypatch: pytest.MonkeyPatch, path: Path) -> Callable[[], None]:
    """The local stream runner feeding the process Lambda handler from moto's stream; returns `drain`."""
    from botocore.config import Config

    from functions.process import handler
    from shared.local.streams import DynamoStreamsFeed, StreamRunner, quarantine_into
    from tests.streams import drain, fold_runner

    handler.store.cache_clear()
    handler.pipeline.cache_clear()  # a new pipeline reads this table's rules and definitions at its first batch
    monkeypatch.setattr(handler, "function_store", partial(wiring.function_store, client=client))
    streams = boto3.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))
    runner = StreamRunner(
        feed=DynamoStreamsFeed(client, streams, TABLE, "us-east-1"),
        handler=handler.lambda_handler,
        checkpoint_path=path / "checkpoint.json",
        quarantine=quarantine_into(table),
        batch_window=0,
    )

    fold = fold_runner(client, DynamoStreamsFeed(client, streams, TABLE, "us-east-1"), table, path, monkeypatch)

    def drain_both() -> None:
        drain(runner, fold)

    return drain_both


def _seed(table: DynamoTrackingStore, monkeypatch: pytest.MonkeyPatch, path: Path) -> World:
    from functions.process import handler

    source, _ = a_source("web")
    table.put_source(source)
    now = datetime.now(UTC)
    if (now + timedelta(minutes=2)).date() != now.date():  # the seeded events and the app's clock on one day
        time.sleep((datetime.combine(now.date() + timedelta(days=1), dt_time(), UTC) - now).total_seconds() + 1)
        now = datetime.now(UTC)
    apply_segments(table, json.loads(STARTERS.read_text()), source="starters", now=now, customers=[])
    apply_definitions(table, json.loads(ANALYTICS_STARTERS.read_text()), source="starters", now=now)
    drain = _stream(table.client, table, monkeypatch, path)
    collector = Collector(table)

    def send(calls: list[dict[str, Any]]) -> None:
        collector.ingest(source, calls, route="/v1/batch", received_at=datetime.now(UTC))
        drain()
        drain()  # the audience events the first pass announced

    cart_age = timedelta(minutes=70)
    paid = {"campaign": {"source": "google", "medium": "cpc", "name": "spring"}}
    calls = [
        _track("ann", "Product Viewed", "ann-1", ago=cart_age, product_id="p1"),
        _track("ann", "Product Added", "ann-2", ago=cart_age, product_id="p1", cart_id="c-ann"),
        {"type": "identify", "userId": "ann", "messageId": "ann-3", "traits": {"email": "ann@example.com"}},
        {**_track("bob", "Product Viewed", "bob-1", product_id="p2"), "context": paid},
        _track("bob", "Product Added", "bob-2", product_id="p2", cart_id="c-bob"),
        _track("bob", "Checkout Started", "bob-3", cart_id="c-bob"),
        _track("bob", "Order Completed", "bob-4", revenue=600, cart_id="c-bob"),
        {"type": "identify", "userId": "bob", "messageId": "bob-5", "traits": {"email": "bob@example.com"}},
        {"type": "track", "userId": "zed", "messageId": "zed-1"},  # no event name: refused, a failed event
    ]
    browsers = ["cyd", "dee", "eve"]
    calls += [_track(who, "Product Viewed", f"{who}-{n}", product_id=f"p{n}") for who in browsers for n in range(2)]
    handler.pipeline().forget_rules()
    send(calls)
    seeded = Seeded(
        abandoner="ann",
        buyer="bob",
        browsers=browsers,
        now=now + timedelta(minutes=1),
        abandoner_today=(now - cart_age).date() == now.date(),
    )
    return World(table, seeded, send)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One seeded table for a module's read-only tests."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in FAKE_AWS.items():
            monkeypatch.setenv(name, value)
        from functions.process import handler  # its settings are read from the environment at import

        with mock_aws():
            client = boto3.client("dynamodb")
            client.create_table(TableName=TABLE, **TABLE_DEFINITION)
            table = DynamoTrackingStore(TABLE, client=client, retry=RetryPolicy(sleep=lambda _: None))
            yield _seed(table, monkeypatch, tmp_path_factory.mktemp("stream"))
    handler.store.cache_clear()
    handler.pipeline.cache_clear()


@pytest.fixture
def fresh_world(store: DynamoTrackingStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[World]:  # noqa: F811
    """A seeded table of this test's own (it may write)."""
    from functions.process import handler

    yield _seed(store, monkeypatch, tmp_path)
    handler.store.cache_clear()
    handler.pipeline.cache_clear()


def app_on(world: World) -> OperatorApp:
    """The app on a seeded table, at the seeded clock, polling fast."""
    return make_app(StoreDataSource(world.store, label="moto"), clock=lambda: world.seeded.now, poll_seconds=0.2)


@pytest.fixture
def pilot_app(world: World) -> OperatorApp:
    return app_on(world)


@pytest.fixture
def seeded(world: World) -> Seeded:
    return world.seeded

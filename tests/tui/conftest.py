"""TUI fixtures: a moto table seeded through the real collector, stream processing and segments; the app on it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.local.stack import STARTERS
from shared.services.segments import apply_segments, run_scheduler
from tests.integration.conftest import ddb, http, source, store, stream  # noqa: F401  (fixtures)
from tui.app import OperatorApp, make_app
from tui.data import StoreDataSource


@dataclass(frozen=True)
class Seeded:
    """What the seeded table holds (ids to look for on screen)."""

    abandoner: str
    """userId of a customer who added to cart and did not order: in `cart_abandoners` (via the scheduler)."""
    buyer: str
    """userId of a customer who ordered for 600: a heavy spender."""
    browsers: list[str]
    """userIds of customers who only viewed products."""
    failed_ids: list[str]
    """Failed-event ids (a track call without an event name)."""
    now: datetime
    """The clock after the scheduler ran (an hour after the events)."""


def _track(user: str, event: str, message: str, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": event, "messageId": message, "properties": properties}


@pytest.fixture
def seeded(http: Any, source: Any, store: Any, stream: Any) -> Seeded:  # noqa: F811
    """Starter segments, a few customers' events through the collector and the stream, one refused event."""
    from functions.process import handler

    _, key = source
    now = datetime.now(UTC)
    apply_segments(store, json.loads(STARTERS.read_text()), source="starters", now=now, customers=[])
    handler._rules.update(at=0.0)  # the process Lambda reads the rules just applied
    calls = [
        _track("ann", "Product Viewed", "ann-1", product_id="p1"),
        _track("ann", "Product Added", "ann-2", product_id="p1", cart_id="c-ann"),
        {"type": "identify", "userId": "ann", "messageId": "ann-3", "traits": {"email": "ann@example.com"}},
        _track("bob", "Order Completed", "bob-1", revenue=600, cart_id="c-bob"),
        {"type": "identify", "userId": "bob", "messageId": "bob-2", "traits": {"email": "bob@example.com"}},
    ]
    browsers = ["cyd", "dee", "eve"]
    calls += [_track(who, "Product Viewed", f"{who}-{n}", product_id=f"p{n}") for who in browsers for n in range(2)]
    assert http("POST", "/v1/batch", body=json.dumps({"batch": calls}), write_key=key).status == 200
    bad = http("POST", "/v1/track", body=json.dumps({"userId": "zed", "messageId": "zed-1"}), write_key=key)
    assert bad.status == 400
    stream.drain()
    later = now + timedelta(minutes=62)
    run_scheduler(store, now=later)  # ann's cart is an hour old: she becomes a cart abandoner
    stream.drain()
    failed = [f.id for f in store.list_failed(limit=10).items]
    return Seeded(abandoner="ann", buyer="bob", browsers=browsers, failed_ids=failed, now=later)


@pytest.fixture
def pilot_app(store: Any, seeded: Seeded) -> OperatorApp:  # noqa: F811
    """The app on the seeded table, at the seeded clock, polling fast."""
    return make_app(StoreDataSource(store, label="moto"), clock=lambda: seeded.now, poll_seconds=0.2)

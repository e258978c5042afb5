"""The customer item's derived state in the real pipeline: a new customer's batch and a returning customer's read
none of its history, and what is stored stays what the independent oracle recomputes from the raw events."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.services.customers import find_customer
from shared.services.segments import apply_segments
from shared.storage.dynamo import DynamoTrackingStore
from tests.builders import a_track, random_ref
from tests.oracle import audit

pytestmark = pytest.mark.integration

RULES = {
    "segments": [
        {"id": "viewers", "rule": {"count": {"event": "Product Viewed"}, "within": "7d", "gte": 2}},
        {"id": "buyers", "rule": {"sum": {"event": "Order Completed", "property": "revenue"}, "gte": 100}},
        {"id": "fresh", "rule": {"first": "any", "within": "7d"}},
    ]
}


def _send(http: Any, key: str, *calls: dict[str, Any]) -> None:
    answer = http("POST", "/v1/batch", body=json.dumps({"batch": list(calls)}), write_key=key)
    assert answer.status == 200 and {r["status"] for r in answer.json["results"]} == {"accepted"}, answer.json


def test_new_and_returning_customers_batches_read_none_of_their_history(http, source, store, stream, monkeypatch):
    _, key = source
    apply_segments(store, RULES, source="test", now=datetime.now(UTC), customers=[])
    reads: list[tuple[str, str]] = []
    real = DynamoTrackingStore.list_identity_events

    def counted(self: Any, kind: str, identifier: str) -> Any:
        reads.append((kind, identifier))
        return real(self, kind, identifier)

    monkeypatch.setattr(DynamoTrackingStore, "list_identity_events", counted)
    ada, bob = random_ref("ada"), random_ref("bob")
    _send(http, key, a_track(userId=ada, event="Product Viewed"), a_track(userId=bob, event="Signed Up"))
    stream.drain()
    assert reads == []  # new customers: their state is built from what their first write folds
    assert find_customer(store, ada).derived is not None
    # When both come back, in three batches
    _send(http, key, a_track(userId=ada, event="Product Viewed"), a_track(userId=bob, event="Product Viewed"))
    stream.drain()
    _send(http, key, a_track(userId=ada, event="Order Completed", properties={"revenue": 150}))
    stream.drain()
    _send(http, key, a_track(userId=bob, event="Product Viewed"))
    stream.drain()
    # Then no batch read their histories, and they entered what their events say
    assert reads == []
    assert set(find_customer(store, ada).segments or {}) == {"viewers", "buyers", "fresh"}
    assert set(find_customer(store, bob).segments or {}) == {"viewers", "fresh"}
    audit(store)
    # And an anonymous history attached by an identify is read once, then carried on again
    device = random_ref("device")
    _send(http, key, a_track(userId=None, anonymousId=device, event="Product Viewed"))
    stream.drain()
    reads.clear()
    identify = a_track(type="identify", userId=ada, anonymousId=device, traits={"plan": "pro"}, properties={})
    del identify["event"]  # (clock-corrected as the other calls: a later call is a later event)
    _send(http, key, identify)
    stream.drain()
    assert ("a", device) in reads
    reads.clear()
    _send(http, key, a_track(userId=ada, event="Product Viewed"))
    stream.drain()
    assert reads == []
    audit(store)

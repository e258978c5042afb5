"""Replaying a failed request stores what its route would have stored: one decoder per route for both."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest

from functions.collect import routes, tracker_routes
from shared.domain import links, webhooks
from shared.domain.events import TrackingEvent
from shared.domain.sources import Source, WebhookMapping
from shared.services.collect import Collector
from shared.services.replay import ReplayError, replay
from tests.builders import a_source
from tests.fakes import InMemoryTrackingStore

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
ORDERS = WebhookMapping(
    events="$.orders",
    event="$.topic",
    event_names={"orders/create": "Order Completed"},
    user_id="$.customer.id",
    properties={"order_id": "$.id", "total": "$.total_price"},
)
ORDER_BODY = json.dumps(
    {
        "orders": [
            {"id": 7001, "topic": "orders/create", "customer": {"id": "c-42"}, "total_price": "19.90"},
            {"id": 7002, "topic": "orders/create", "customer": {"id": "c-43"}, "total_price": "5.00"},
        ]
    }
)
BATCH_BODY = json.dumps(
    {
        "batch": [
            {"type": "track", "event": "Product Viewed", "userId": "u-1", "messageId": "m-1"},
            {"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}, "messageId": "m-2"},
        ],
        "context": {"library": {"name": "analytics-python"}},
    }
)


@dataclass
class ReplayableStore(InMemoryTrackingStore):
    """The in-memory store with what replay needs besides: forgetting a replayed record."""

    def delete_failed(self, failure_id: str) -> None:
        self.failed = [failure for failure in self.failed if failure.id != failure_id]


def a_store(**overrides: object) -> tuple[ReplayableStore, Source, str]:
    store = ReplayableStore()
    source, write_key = a_source("shop", **overrides)
    store.put_source(source, write_keys=[write_key])
    return store, source, write_key


def stored(store: InMemoryTrackingStore) -> list[TrackingEvent]:
    return sorted(store.events.values(), key=lambda event: event.message_id)


def replayed(source_overrides: dict[str, object], route: str, raw: str) -> list[TrackingEvent]:
    """Record `raw` as the handler does when a route fails on a bug (500, the request kept), then replay it."""
    store, source, _ = a_store(**source_overrides)
    collector = Collector(store)
    collector.record_failure(
        route=route, reason="internal error (RuntimeError)", status=500, raw=raw, received_at=NOW, source_id=source.id
    )
    (failure,) = store.failed
    replay(store, collector, failure, decode_record=None)
    assert store.failed == []
    return stored(store)


def signed(source: Source, body: str) -> routes.HttpRequest:
    stamp = int(NOW.timestamp())
    headers = {
        webhooks.TIMESTAMP_HEADER: str(stamp),
        webhooks.SIGNATURE_HEADER: webhooks.sign_webhook(body.encode(), source.webhook_secrets[0], stamp),
    }
    return routes.HttpRequest(path=f"/v1/webhooks/{source.id}", headers=headers, body=body)


def through_webhook_route(source_overrides: dict[str, object], body: str) -> list[TrackingEvent]:
    store, source, _ = a_store(**source_overrides)
    reply = routes.webhook(Collector(store), signed(source, body), source.id, now=NOW, state=routes.RequestState())
    assert reply.status == 200
    return stored(store)


def test_a_replayed_mapped_webhook_is_stored_as_the_webhook_route_stores_it():
    from_route = through_webhook_route({"webhook_mapping": ORDERS}, ORDER_BODY)

    from_replay = replayed({"webhook_mapping": ORDERS}, "/v1/webhooks/shop", ORDER_BODY)

    assert [event.event for event in from_route] == ["Order Completed", "Order Completed"]
    assert from_replay == from_route


def test_one_mapped_event_recorded_alone_is_replayed_as_it_is():
    store, source, _ = a_store(webhook_mapping=ORDERS)
    collector = Collector(store)
    (mapped, _) = webhooks.map_webhook(json.loads(ORDER_BODY), {}, ORDERS, source_id=source.id)
    invalid = {**mapped, "timestamp": "not a time"}
    collector.ingest(source, [invalid], route="/v1/webhooks/shop", received_at=NOW)
    (failure,) = store.failed
    assert failure.message_id == mapped["messageId"]  # what tells it from a whole webhook body

    with pytest.raises(ReplayError, match="still invalid"):  # the mapping is not applied to it a second time
        replay(store, collector, failure, decode_record=None)


def test_a_replayed_unmapped_webhook_batch_stores_every_call():
    from_replay = replayed({}, "/v1/webhooks/shop", BATCH_BODY)

    assert [(event.event, event.type.value) for event in from_replay] == [
        ("Product Viewed", "track"),
        (None, "identify"),
    ]


def test_a_replayed_beacon_batch_is_split_like_the_route_splits_it():
    store, _, write_key = a_store()
    request = routes.HttpRequest(
        path="/beacon/v1/batch", headers={}, raw_query=f"writeKey={write_key}", body=BATCH_BODY
    )
    tracker_routes.rudder_beacon(Collector(store), request, now=NOW, state=routes.RequestState())
    assert len(stored(store)) == 2

    assert replayed({}, "/beacon/v1/batch", BATCH_BODY) == stored(store)


def test_a_replayed_abbreviated_call_keeps_its_call_type():
    body = json.dumps({"event": "Signed Up", "userId": "u-7", "messageId": "m-7"})

    (event,) = replayed({}, "/v1/t", body)

    assert (event.type.value, event.event) == ("track", "Signed Up")


def test_a_replayed_pixel_is_stored_as_the_pixel_route_stores_it():
    store, _, write_key = a_store()
    data = base64.b64encode(json.dumps({"event": "Email Opened", "userId": "u-9", "messageId": "m-9"}).encode())
    query = urlencode({"data": data.decode(), "writeKey": write_key})
    routes.pixel(
        Collector(store), routes.HttpRequest(path="/v1/pixel/track", headers={}, raw_query=query), "track", now=NOW
    )
    assert [event.event for event in stored(store)] == ["Email Opened"]

    assert replayed({}, "/v1/pixel/track", query) == stored(store)


def test_a_replayed_click_is_stored_as_the_redirect_stores_it():
    store, source, _ = a_store()
    params = links.click_params(
        source_id=source.id,
        target="https://shop.example/sale",
        secret=source.link_secrets[0],
        user_id="u-5",
        message_id="m-5",
    )
    query = urlencode(params)
    request = routes.HttpRequest(path="/v1/r", headers={}, raw_query=query)
    assert routes.click(Collector(store), request, now=NOW, state=routes.RequestState()).status == 302

    from_replay = replayed({"link_secrets": source.link_secrets}, "/v1/r", query)

    assert from_replay == stored(store)
    assert from_replay[0].properties["url"] == "https://shop.example/sale"


def test_a_replayed_click_with_a_tampered_signature_is_refused():
    store, source, _ = a_store()
    params = links.click_params(source_id=source.id, target="https://shop.example/", secret="not the source's")
    collector = Collector(store)
    collector.record_failure(
        route="/v1/r", reason="link refused", status=400, raw=urlencode(params), received_at=NOW, source_id=source.id
    )

    with pytest.raises(ReplayError, match="signature does not match"):
        replay(store, collector, store.failed[0], decode_record=None)


SNOWPLOW_PAGE_VIEW = {
    "e": "pv",
    "eid": "5f0f8c4e-8d5e-4a3c-9a43-0c8a3bde6a11",
    "duid": "d-123",
    "tv": "js-4.1.0",
    "dtm": "1764410400000",
    "url": "https://shop.example/shoes?ref=nav",
    "page": "Shoes",
}


def test_a_replayed_snowplow_pixel_is_stored_as_the_snowplow_route_stores_it():
    store, _, write_key = a_store()
    query = urlencode(SNOWPLOW_PAGE_VIEW)
    request = routes.HttpRequest(path=f"/snowplow/{write_key}/i", headers={}, raw_query=query)
    tracker_routes.snowplow_pixel(Collector(store), request, write_key, now=NOW)
    assert [event.type.value for event in stored(store)] == ["page"]

    assert replayed({}, "/snowplow/{writeKey}/i", query) == stored(store)


@pytest.mark.parametrize("whole", [True, False], ids=["whole request", "one event recorded alone"])
def test_a_replayed_snowplow_post_is_stored_as_the_snowplow_route_stores_it(whole):
    store, _, write_key = a_store()
    body = json.dumps(
        {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4", "data": [SNOWPLOW_PAGE_VIEW]}
    )
    request = routes.HttpRequest(
        path=f"/snowplow/{write_key}/com.snowplowanalytics.snowplow/tp2", headers={}, body=body
    )
    tracker_routes.snowplow_post(Collector(store), request, write_key, now=NOW, state=routes.RequestState())
    assert [event.type.value for event in stored(store)] == ["page"]

    raw = body if whole else json.dumps(SNOWPLOW_PAGE_VIEW)
    assert replayed({}, "/snowplow/{writeKey}/com.snowplowanalytics.snowplow/tp2", raw) == stored(store)

"""Snowplow tracker protocol → Segment-shaped calls (pure mapping)."""

from __future__ import annotations

import base64
import json

import pytest

from shared.domain.errors import InvalidEventError
from shared.domain.events import parse_event
from shared.domain.snowplow import payload_events, schema_event_name, segment_call

BASE = {
    "eid": "5f0f8c4e-8d5e-4a3c-9a43-0c8a3bde6a11",
    "duid": "d-123",
    "aid": "shop",
    "p": "web",
    "tv": "js-4.1.0",
    "dtm": "1764410400000",
    "stm": "1764410401000",
    "url": "https://shop.example/shoes?ref=nav",
    "page": "Shoes",
    "refr": "https://search.example/",
    "sid": "s-9",
    "vid": "2",
    "res": "1920x1080",
    "lang": "en-GB",
}


def _b64url(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def test_page_view_is_a_page_call_with_the_page_context_and_the_browser_identity():
    call = segment_call({**BASE, "e": "pv"}, user_agent="Mozilla/5.0")
    assert call["type"] == "page" and call["name"] == "Shoes"
    assert call["messageId"] == BASE["eid"] and call["anonymousId"] == "d-123" and "userId" not in call
    assert call["timestamp"] == "2025-11-29T10:00:00.000Z" and call["sentAt"] == "2025-11-29T10:00:01.000Z"
    page = call["context"]["page"]
    assert page == {
        "url": BASE["url"],
        "path": "/shoes",
        "search": "?ref=nav",
        "title": "Shoes",
        "referrer": "https://search.example/",
    }
    assert call["properties"] == page
    assert call["context"]["userAgent"] == "Mozilla/5.0" and call["context"]["screen"] == {
        "width": 1920,
        "height": 1080,
    }
    assert call["context"]["snowplow"] == {
        "app_id": "shop",
        "platform": "web",
        "domain_sessionid": "s-9",
        "domain_sessionidx": "2",
    }


def test_structured_event_is_a_track_named_by_its_action():
    fields = {**BASE, "e": "se", "uid": "alice", "se_ca": "shop", "se_ac": "Add To Cart", "se_la": "red"}
    call = segment_call({**fields, "se_pr": "size-9", "se_va": "59.5"})
    assert (call["type"], call["event"], call["userId"], call["anonymousId"]) == (
        "track",
        "Add To Cart",
        "alice",
        "d-123",
    )
    assert call["properties"] == {
        "category": "shop",
        "action": "Add To Cart",
        "label": "red",
        "property": "size-9",
        "value": 59.5,
    }


@pytest.mark.parametrize("encoded", [False, True], ids=["ue_pr", "ue_px"])
def test_self_describing_event_is_a_track_named_by_its_schema_with_its_data(encoded):
    event = {
        "schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
        "data": {"schema": "iglu:com.acme/checkout_step/jsonschema/1-0-2", "data": {"step": 2, "coupon": "X"}},
    }
    contexts = {
        "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-0",
        "data": [{"schema": "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0", "data": {"id": "pv-1"}}],
    }
    fields = (
        {"ue_px": _b64url(event), "cx": _b64url(contexts)}
        if encoded
        else {"ue_pr": json.dumps(event), "co": json.dumps(contexts)}
    )
    call = segment_call({**BASE, "e": "ue", **fields})
    assert (call["type"], call["event"]) == ("track", "com.acme/checkout_step")
    assert call["properties"] == {"step": 2, "coupon": "X"}
    assert call["context"]["snowplow"]["contexts"] == contexts["data"]


def test_mapped_events_pass_the_collectors_own_validation():
    from datetime import UTC, datetime

    for fields in ({**BASE, "e": "pv"}, {**BASE, "e": "se", "se_ca": "c", "se_ac": "a"}, {**BASE, "e": "pp"}):
        event = parse_event(
            segment_call(fields),
            source_id="web",
            received_at=datetime(2025, 11, 29, 10, 0, 2, tzinfo=UTC),
            new_id=lambda: "x",
        )
        assert event.anonymous_id == "d-123" and event.message_id == BASE["eid"]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"e": "xx"}, "unsupported Snowplow event"),
        ({"e": "se", "se_ca": "c"}, "se_ca (category) and se_ac (action)"),
        ({"e": "se", "se_ca": "c", "se_ac": "a", "se_va": "lots"}, "se_va (value) must be a number"),
        ({"e": "ue", "ue_px": "%%%"}, "ue_px is not base64url"),
        ({"e": "ue", "ue_pr": "{not json"}, "ue_pr/ue_px is not JSON"),
        ({"e": "ue", "ue_pr": "{}"}, "needs ue_pr or ue_px"),
        ({"e": "pv", "co": "[1]"}, "co/cx must be a contexts object"),
        ("not an object", "must be an object of fields"),
    ],
)
def test_unreadable_events_are_refused_with_the_reason(fields, reason):
    with pytest.raises(InvalidEventError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        segment_call(fields)


def test_payload_data_envelope_is_required():
    good = {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4", "data": [{"e": "pv"}]}
    assert payload_events(good) == [{"e": "pv"}]
    for bad in ({"data": [{}]}, {"schema": "iglu:x/y/jsonschema/1-0-0", "data": []}, [1], {"schema": good["schema"]}):
        with pytest.raises(InvalidEventError):
            payload_events(bad)


@pytest.mark.parametrize("schema", ["com.acme/x/jsonschema/1-0-0", "iglu:com.acme/x", "iglu:/x/jsonschema/1-0-0"])
def test_schema_names_must_be_iglu_uris(schema):
    with pytest.raises(InvalidEventError):
        schema_event_name(schema)

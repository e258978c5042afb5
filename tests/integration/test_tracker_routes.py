"""The routes the official browser SDKs and Snowplow trackers use, through the collect Lambda against moto."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import pytest

from shared.domain.pixel import TRANSPARENT_GIF
from shared.services.overview import overview
from tests.builders import a_track, random_ref

pytestmark = pytest.mark.integration

HOST = {"Host": "collect.shop.example", "X-Forwarded-Proto": "https"}
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


@pytest.mark.parametrize(("path", "call"), [("/v1/t", "track"), ("/v1/p", "page"), ("/v1/i", "identify")])
def test_analytics_js_abbreviated_routes_take_text_plain_bodies_with_the_write_key_inside(
    http, source, store, path, call
):
    # Given a call as analytics.js posts it: text/plain JSON, writeKey, sentAt and _metadata in the body
    _, write_key = source
    body = a_track(type=call, writeKey=write_key, _metadata={"bundled": ["Segment.io"], "unbundled": []})
    body["context"]["page"] = {"path": "/shoes", "url": "https://shop.example/shoes"}
    # When
    answer = http("POST", path, body=json.dumps(body), headers={"Content-Type": "text/plain"})
    # Then
    assert answer.status == 200, answer.json
    (event,) = store.list_identity_events("u", body["userId"])
    assert (event.type, event.message_id, event.context["page"]["path"]) == (call, body["messageId"], "/shoes")


def test_v1_b_is_a_batch(http, source, store):
    _, write_key = source
    calls = [a_track(), a_track(type="identify", traits={"plan": "pro"})]
    answer = http("POST", "/v1/b", body=json.dumps({"batch": calls, "sentAt": calls[0]["sentAt"]}), write_key=write_key)
    assert answer.status == 200
    assert [r["status"] for r in answer.json["results"]] == ["accepted", "accepted"]


def test_preflight_allows_the_headers_the_sdks_send(http, source):
    answer = http(
        "OPTIONS",
        "/v1/t",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-retry-count",
        },
    )
    assert answer.status == 204
    allowed = answer.headers["Access-Control-Allow-Headers"].lower()
    assert {"authorization", "content-type", "x-retry-count", "anonymousid", "sp-anonymous"} <= set(allowed.split(","))


def test_analytics_js_settings_point_at_this_collector_and_refuse_an_unknown_key(http, source):
    _, write_key = source
    answer = http("GET", f"/v1/projects/{write_key}/settings", headers=HOST)
    assert answer.status == 200
    segment = answer.json["integrations"]["Segment.io"]
    assert (segment["apiHost"], segment["protocol"], segment["apiKey"]) == (
        "collect.shop.example/v1",
        "https",
        write_key,
    )
    assert http("GET", "/v1/projects/ffk_wrong/settings", headers=HOST).status == 401


@pytest.mark.parametrize("path", ["/sourceConfig/", "/sourceConfig"])
def test_rudderstack_source_config_is_this_source_without_destinations(http, source, path):
    created, write_key = source
    answer = http("GET", path, query=f"p=npm&v=3.34.1&writeKey={write_key}&lockIntegrationsVersion=true")
    assert answer.status == 200
    assert answer.json["source"]["id"] == created.id and answer.json["source"]["destinations"] == []
    assert http("GET", path, query="writeKey=ffk_wrong").status == 401


def test_rudderstack_beacon_batches_are_stored(http, source, store):
    _, write_key = source
    call = a_track(anonymousId=random_ref("anon"))
    body = json.dumps({"batch": [call], "sentAt": call["sentAt"]})
    answer = http("POST", "/beacon/v1/batch", query=f"writeKey={write_key}", body=body)
    assert answer.status == 200
    assert [e.message_id for e in store.list_identity_events("u", call["userId"])] == [call["messageId"]]


def test_snowplow_pixel_with_the_key_in_its_path_is_stored_under_the_browser(http, source, store):
    _, write_key = source
    query = "e=pv&eid=ev-1&duid=d-42&uid=alice&url=https%3A%2F%2Fshop.example%2Fshoes&page=Shoes&aid=shop&tv=js-4"
    answer = http("GET", f"/snowplow/{write_key}/i", query=query)
    assert (answer.status, answer.body) == (200, TRANSPARENT_GIF)
    (event,) = store.list_identity_events("u", "alice")  # the person, once the site set a user id
    assert (event.type, event.anonymous_id, event.message_id, event.name) == ("page", "d-42", "ev-1", "Shoes")


def test_snowplow_without_a_key_is_refused_with_a_hint_and_recorded(http, source, store):
    pixel = http("GET", "/i", query="e=pv&duid=d-1&aid=shop", headers=HOST)
    post = http("POST", "/com.snowplowanalytics.snowplow/tp2", body=json.dumps({"schema": PAYLOAD_DATA, "data": []}))
    assert (pixel.status, pixel.body) == (200, TRANSPARENT_GIF)  # a pixel always gets its GIF
    assert post.status == 401 and "/snowplow/<writeKey>" in post.json["error"]
    failed = sorted(store.list_failed().items, key=lambda f: f.route)
    assert [(f.route, f.status) for f in failed] == [("/com.snowplowanalytics.snowplow/tp2", 401), ("/i", 200)]
    assert all("https://collect.shop.example/snowplow/<writeKey>" in f.reason for f in failed[1:])
    assert store.list_identity_events("a", "d-1") == []


def test_snowplow_post_keeps_the_neighbours_of_an_unreadable_event(http, source, store):
    # Given a tp2 batch with a structured event, a broken self-describing event and a page view
    _, write_key = source
    events = [
        {"e": "se", "eid": "e-1", "duid": "d-7", "se_ca": "shop", "se_ac": "Add To Cart", "se_va": "3"},
        {"e": "ue", "eid": "e-2", "duid": "d-7", "ue_px": "!!!"},
        {"e": "pv", "eid": "e-3", "duid": "d-7", "url": "https://shop.example/"},
    ]
    # When
    answer = http(
        "POST",
        f"/snowplow/{write_key}/com.snowplowanalytics.snowplow/tp2",
        body=json.dumps({"schema": PAYLOAD_DATA, "data": events}),
        headers={"Content-Type": "application/json; charset=UTF-8"},
    )
    # Then
    assert answer.status == 200
    stored = {e.message_id: e for e in store.list_identity_events("a", "d-7")}
    assert set(stored) == {"e-1", "e-3"}
    assert stored["e-1"].event == "Add To Cart" and stored["e-1"].properties["value"] == 3.0
    (failed,) = store.list_failed().items
    assert failed.reason == "ue_px is not base64url-encoded UTF-8 JSON" and json.loads(failed.raw)["eid"] == "e-2"
    assert write_key not in failed.route


def test_an_unknown_route_is_404_with_a_hint_recorded_without_the_key_and_counted(http, source, store):
    # Given an SDK whose apiHost lacks the /v1 (and a body carrying the write key, as analytics.js sends it)
    _, write_key = source
    body = json.dumps(a_track(writeKey=write_key))
    # When
    answer = http("POST", "/t", body=body, headers=HOST)
    unknown_call = http("POST", "/v1/tracks", body=body, headers=HOST)
    # Then
    assert answer.status == 404
    assert "did you mean POST /v1/track? set apiHost to collect.shop.example/v1" in answer.json["error"]
    assert unknown_call.status == 404 and "known routes" in unknown_call.json["error"]
    failed = store.list_failed().items
    assert sorted(f.route for f in failed) == ["/t", "/v1/tracks"]
    assert all(f.status == 404 and write_key not in f.raw.decode() for f in failed)
    assert json.loads(failed[0].raw)["writeKey"] == "[redacted]"
    assert overview(store, now=datetime.now(UTC)).failed_today == 2


# Segment's mobile SDKs cannot run here (analytics-swift needs iOS, analytics-kotlin Android): their uploads are
# replayed as their HTTP clients build them: POST {apiHost}/b, Basic auth with the write key, a {batch, sentAt}
# body, gzip-compressed by analytics-kotlin; a batch is kept and retried on 429/5xx and dropped on other 4xx.
MOBILE_SHAPES = {
    "analytics-swift": {"Content-Type": "application/json; charset=utf-8", "User-Agent": "analytics-ios/1.5.0"},
    "analytics-kotlin": {"Content-Type": "text/plain", "Content-Encoding": "gzip", "User-Agent": "analytics-kotlin"},
}


@pytest.mark.parametrize("sdk", sorted(MOBILE_SHAPES))
def test_mobile_sdk_uploads_to_v1_b_are_stored_once_even_when_retried(http, source, store, sdk):
    # Given a mobile batch as the SDK uploads it
    _, write_key = source
    headers = MOBILE_SHAPES[sdk]
    anonymous = random_ref("device")
    batch = [
        {
            **a_track(anonymousId=anonymous, context={"library": {"name": sdk}, "device": {"type": "ios"}}),
            "userId": None,
        },
        {"type": "screen", "name": "Basket", "anonymousId": anonymous, "messageId": random_ref("msg")},
    ]
    data = json.dumps({"batch": batch, "sentAt": "2026-11-29T10:00:02.000Z", "writeKey": write_key}).encode()
    body = gzip.compress(data) if headers.get("Content-Encoding") == "gzip" else data
    # When it uploads, and uploads again (the answer was lost: the SDK keeps the batch file and retries)
    first = http("POST", "/v1/b", body=body, headers=headers, write_key=write_key)
    retry = http("POST", "/v1/b", body=body, headers=headers, write_key=write_key)
    # Then both are 2xx (the SDK deletes the batch), and each event is stored once
    assert (first.status, retry.status) == (200, 200)
    assert [r["status"] for r in retry.json["results"]] == ["duplicate", "duplicate"]
    assert sorted(e.type for e in store.list_identity_events("a", anonymous)) == ["screen", "track"]
    # and a batch that can never be valid is a 4xx (dropped by the SDK, not retried forever), kept as failed
    bad = http("POST", "/v1/b", body=b"{not json", headers={"Content-Type": "text/plain"}, write_key=write_key)
    assert bad.status == 400 and store.list_failed().items

"""The Segment-compatible API through the collect Lambda, against moto."""

from __future__ import annotations

import gzip
import json

import pytest

from shared.domain.results import Outcome
from tests.builders import a_track, random_ref

pytestmark = pytest.mark.integration


def test_track_is_stored_once_and_a_retry_is_answered_as_duplicate(http, source, store):
    # Given
    _, write_key = source
    call = a_track()
    # When
    first = http("POST", "/v1/track", body=json.dumps(call), write_key=write_key)
    retry = http("POST", "/v1/track", body=json.dumps(call), write_key=write_key)
    # Then
    assert (first.status, retry.status) == (200, 200)
    assert first.json["results"][0]["status"] == "accepted"
    assert retry.json["results"][0]["status"] == "duplicate"
    stored = store.list_identity_events("u", call["userId"])
    assert [e.message_id for e in stored] == [call["messageId"]]


def test_batch_answers_per_event_and_keeps_valid_neighbours_of_a_bad_event(http, source, store):
    # Given
    _, write_key = source
    good, bad, also_good = a_track(), {"type": "track", "userId": "u"}, a_track(type="identify", traits={"plan": "pro"})
    # When
    answer = http("POST", "/v1/batch", body=json.dumps({"batch": [good, bad, also_good]}), write_key=write_key)
    # Then
    assert answer.status == 200
    assert [r["status"] for r in answer.json["results"]] == ["accepted", "rejected", "accepted"]
    assert answer.json["results"][1]["reason"] == "event is required for track"
    assert len(store.list_identity_events("u", good["userId"])) == 1
    assert len(store.list_identity_events("u", also_good["userId"])) == 1
    failed = store.list_failed().items
    assert [(f.route, f.reason, f.source_id) for f in failed] == [("/v1/batch", "event is required for track", "web")]
    assert json.loads(failed[0].raw) == bad


def test_write_key_in_body_is_accepted_and_never_stored(http, source, store):
    _, write_key = source
    call = a_track(writeKey=write_key)
    answer = http("POST", "/v1/track", body=json.dumps(call))
    assert answer.status == 200
    (event,) = store.list_identity_events("u", call["userId"])
    assert write_key not in json.dumps(event.to_payload())


@pytest.mark.parametrize("write_key", [None, "ffk_wrong", ""])
def test_missing_or_wrong_write_key_is_401_and_recorded(http, source, store, write_key):
    answer = http("POST", "/v1/track", body=json.dumps(a_track()), write_key=write_key)
    assert answer.status == 401
    assert answer.json["success"] is False
    assert "WWW-Authenticate" in answer.headers
    assert [f.status for f in store.list_failed().items] == [401]


def test_gzip_body_is_accepted(http, source, store):
    _, write_key = source
    call = a_track()
    answer = http(
        "POST",
        "/v1/batch",
        body=gzip.compress(json.dumps({"batch": [call]}).encode()),
        headers={"Content-Encoding": "gzip"},
        write_key=write_key,
    )
    assert answer.status == 200
    assert answer.json["results"][0]["status"] == Outcome.ACCEPTED


def test_clock_skew_is_corrected_with_sent_at(http, source, store):
    # Given a client whose clock is one hour fast: it stamps and sends "in the future"
    _, write_key = source
    call = a_track(timestamp="2030-01-01T11:00:00.000Z", sentAt="2030-01-01T11:00:05.000Z")
    # When
    http("POST", "/v1/track", body=json.dumps(call), write_key=write_key)
    # Then the stored time is receivedAt minus the 5 s the event waited on the device
    (event,) = store.list_identity_events("u", call["userId"])
    assert (event.received_at - event.timestamp).total_seconds() == pytest.approx(5.0, abs=0.001)
    assert event.original_timestamp.year == 2030


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        ("{not json", 400, "body is not valid JSON"),
        ("", 400, "body is empty"),
        ("[1,2]", 400, "event must be a JSON object"),
        ('{"userId":"u","event":"x","properties":{"v":NaN}}', 400, "body is not valid JSON: NaN is not a JSON value"),
        ('{"event":"x"}', 400, "userId or anonymousId is required"),
        (
            '{"userId":"u","event":"x","timestamp":"yesterday"}',
            400,
            "timestamp is not an ISO-8601 date-time: 'yesterday'",
        ),
    ],
)
def test_bad_input_gets_a_precise_400_and_a_failed_record(http, source, store, body, status, reason):
    _, write_key = source
    answer = http("POST", "/v1/track", body=body, write_key=write_key)
    assert (answer.status, answer.json["error"] if "error" in answer.json else answer.json["results"][0]["reason"]) == (
        status,
        reason,
    )
    assert [f.reason for f in store.list_failed().items] == [reason]


def test_oversize_event_and_batch_are_413(http, source, store):
    _, write_key = source
    big = a_track(properties={"blob": "x" * 33_000})
    assert http("POST", "/v1/track", body=json.dumps(big), write_key=write_key).status == 413
    huge = {"batch": [a_track(properties={"blob": "y" * 30_000}) for _ in range(18)]}
    answer = http("POST", "/v1/batch", body=json.dumps(huge), write_key=write_key)
    assert answer.status == 413
    assert "500 KB" in answer.json["error"]
    too_many = {"batch": [{"type": "track"}] * 2501}
    assert http("POST", "/v1/batch", body=json.dumps(too_many), write_key=write_key).status == 413
    assert store.list_identity_events("u", big["userId"]) == []


def test_unknown_call_is_refused_as_an_unknown_route(http, source):
    _, write_key = source
    answer = http("POST", "/v1/purchase", body=json.dumps(a_track()), write_key=write_key)
    assert answer.status == 404 and "known routes: POST /v1/{track," in answer.json["error"]


def test_cors_preflight_allows_browsers(http):
    answer = http(
        "OPTIONS", "/v1/batch", headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}
    )
    assert answer.status == 204
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert "Content-Type" in answer.headers["Access-Control-Allow-Headers"]


def test_text_plain_beacon_is_accepted(http, source, store):
    _, write_key = source
    call = a_track(writeKey=write_key, userId=random_ref("beacon"))
    answer = http("POST", "/v1/track", body=json.dumps(call), headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert answer.status == 200


def test_the_browser_tracker_is_served_small_and_cacheable(http):
    answer = http("GET", "/v1/footfall.js")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "application/javascript"
    assert "max-age" in answer.headers["Cache-Control"]
    assert answer.body.startswith(b"/*! footfall.js")
    import gzip as gzip_module

    assert len(gzip_module.compress(answer.body, 9)) <= 5 * 1024

"""Segment calls: validation rules, normalisation, clock-skew correction and size limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from shared.domain.errors import InvalidEventError, PayloadTooLargeError
from shared.domain.events import (
    MAX_BATCH_EVENTS,
    MAX_EVENT_BYTES,
    BatchEnvelope,
    CallType,
    TrackingEvent,
    batch_items,
    corrected_timestamp,
    encoded_size,
    event_from_payload,
    format_timestamp,
    parse_envelope,
    parse_event,
)

RECEIVED = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
GENERATED_ID = "generated-message-id"


def parse(raw: Any, **kwargs: Any) -> TrackingEvent:
    kwargs.setdefault("new_id", lambda: GENERATED_ID)
    return parse_event(raw, source_id="web", received_at=RECEIVED, **kwargs)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# The smallest valid call of each type, and the type-specific field it carries.
MINIMAL_CALLS = [
    (CallType.TRACK, {"userId": "u-1", "event": "Signed Up"}, "event", "Signed Up"),
    (CallType.IDENTIFY, {"userId": "u-1", "traits": {"plan": "pro"}}, "traits", {"plan": "pro"}),
    (CallType.PAGE, {"anonymousId": "a-1", "name": "Home"}, "name", "Home"),
    (CallType.SCREEN, {"anonymousId": "a-1", "name": "Settings"}, "name", "Settings"),
    (CallType.GROUP, {"userId": "u-1", "groupId": "acme"}, "group_id", "acme"),
    (CallType.ALIAS, {"userId": "u-new", "previousId": "a-old"}, "previous_id", "a-old"),
]


@pytest.mark.parametrize(("call_type", "raw", "attribute", "expected"), MINIMAL_CALLS)
def test_each_call_type_is_accepted_from_its_route(call_type, raw, attribute, expected):
    event = parse(raw, call_type=call_type)
    assert event.type is call_type
    assert getattr(event, attribute) == expected
    assert event.source_id == "web"


@pytest.mark.parametrize(("call_type", "raw", "attribute", "expected"), MINIMAL_CALLS)
def test_each_call_type_is_accepted_as_a_batch_item_carrying_its_type(call_type, raw, attribute, expected):
    event = parse({"type": call_type.value, **raw})
    assert event.type is call_type
    assert getattr(event, attribute) == expected


def test_the_route_decides_the_type_even_when_the_body_names_another():
    event = parse({"type": "identify", "userId": "u-1", "event": "Signed Up"}, call_type=CallType.TRACK)
    assert event.type is CallType.TRACK


def test_fields_that_do_not_belong_to_the_call_type_are_not_kept():
    # Given an identify call that also carries track/page/group/alias fields
    raw = {"userId": "u-1", "event": "Clicked", "name": "Home", "groupId": "acme", "previousId": "a-1"}
    # When
    event = parse(raw, call_type=CallType.IDENTIFY)
    # Then
    assert (event.event, event.name, event.group_id, event.previous_id) == (None, None, None, None)
    assert set(event.to_payload()) == {"type", "messageId", "timestamp", "receivedAt", "userId"}


@pytest.mark.parametrize(
    ("raw", "call_type", "reason", "field"),
    [
        ([1, 2], CallType.TRACK, "event must be a JSON object", None),
        ("track", CallType.TRACK, "event must be a JSON object", None),
        ({"event": "x"}, CallType.TRACK, "userId or anonymousId is required", "userId"),
        (
            {"userId": "", "anonymousId": "", "event": "x"},
            CallType.TRACK,
            "userId or anonymousId is required",
            "userId",
        ),
        ({"userId": "u"}, CallType.TRACK, "event is required for track", "event"),
        ({"userId": "u", "event": "   "}, CallType.TRACK, "event must not be empty", "event"),
        ({"userId": "u", "event": 5}, CallType.TRACK, "event must be a string", "event"),
        ({"userId": "u", "event": "e" * 257}, CallType.TRACK, "event is longer than 256 bytes (UTF-8)", "event"),
        ({"userId": "u", "name": "n" * 257}, CallType.PAGE, "name is longer than 256 bytes (UTF-8)", "name"),
        ({"userId": "u", "name": ["Home"]}, CallType.SCREEN, "name must be a string", "name"),
        ({"userId": "u"}, CallType.GROUP, "groupId is required for group", "groupId"),
        ({"userId": "u"}, CallType.ALIAS, "previousId is required for alias", "previousId"),
        ({"anonymousId": "a", "previousId": "p"}, CallType.ALIAS, "userId is required for alias", "userId"),
        ({"userId": ["u"], "event": "x"}, CallType.TRACK, "userId must be a string", "userId"),
        ({"userId": {"id": 1}, "event": "x"}, CallType.TRACK, "userId must be a string", "userId"),
        ({"userId": 1.5, "event": "x"}, CallType.TRACK, "userId must be a string", "userId"),
        ({"userId": "u" * 257, "event": "x"}, CallType.TRACK, "userId is longer than 256 bytes (UTF-8)", "userId"),
        ({"anonymousId": "a" * 257}, CallType.PAGE, "anonymousId is longer than 256 bytes (UTF-8)", "anonymousId"),
        # #13 attack 6: limits are in UTF-8 bytes (keys), not characters: 65 four-byte characters are 260 bytes.
        ({"userId": "😀" * 65, "event": "x"}, CallType.TRACK, "userId is longer than 256 bytes (UTF-8)", "userId"),
        (
            {"userId": "u", "event": "x", "messageId": "😀" * 256},
            CallType.TRACK,
            "messageId is longer than 256 bytes (UTF-8)",
            "messageId",
        ),
        ({"userId": "u", "event": "😀" * 65}, CallType.TRACK, "event is longer than 256 bytes (UTF-8)", "event"),
        # #13 attack 2: numbers bounded (money within ±1e15 as a number or a numeric string; any number < 1e38).
        (
            {"userId": "u", "event": "Order Completed", "properties": {"revenue": "1e999999"}},
            CallType.TRACK,
            "revenue is out of range (money within ±1e15)",
            "revenue",
        ),
        (
            {"userId": "u", "event": "x", "properties": {"products": [{"price": 2e15}]}},
            CallType.TRACK,
            "price is out of range (money within ±1e15)",
            "price",
        ),
        (
            {"userId": "u", "event": "x", "properties": {"n": 1e300}},
            CallType.TRACK,
            "n is out of range (|x| < 1e38)",
            "n",
        ),
        (
            {"userId": "u", "event": "x", "properties": {"n": float("inf")}},
            CallType.TRACK,
            "n is not a finite number",
            "n",
        ),
        ({"userId": "u", "groupId": ["g"]}, CallType.GROUP, "groupId must be a string", "groupId"),
        ({"userId": "u", "event": "x", "messageId": 7}, CallType.TRACK, "messageId must be a string", "messageId"),
        (
            {"userId": "u", "event": "x", "messageId": "m" * 257},
            CallType.TRACK,
            "messageId is longer than 256 bytes (UTF-8)",
            "messageId",
        ),
        ({"userId": "u", "properties": "x"}, CallType.PAGE, "properties must be a JSON object", "properties"),
        ({"userId": "u", "traits": [1]}, CallType.IDENTIFY, "traits must be a JSON object", "traits"),
        ({"userId": "u", "context": 3}, CallType.IDENTIFY, "context must be a JSON object", "context"),
        (
            {"userId": "u", "integrations": True},
            CallType.IDENTIFY,
            "integrations must be a JSON object",
            "integrations",
        ),
        (
            {"userId": "u", "event": "x", "timestamp": "yesterday"},
            CallType.TRACK,
            "timestamp is not an ISO-8601 date-time: 'yesterday'",
            "timestamp",
        ),
        (
            {"userId": "u", "event": "x", "timestamp": 1764410400},
            CallType.TRACK,
            "timestamp must be an ISO-8601 date-time string",
            "timestamp",
        ),
        (
            {"userId": "u", "event": "x", "sentAt": "29/11/2026"},
            CallType.TRACK,
            "sentAt is not an ISO-8601 date-time: '29/11/2026'",
            "sentAt",
        ),
        (
            {"userId": "u", "event": "x", "timestamp": "0001-01-01T00:00:00+01:00"},
            CallType.TRACK,
            "timestamp is out of range: '0001-01-01T00:00:00+01:00'",
            "timestamp",
        ),
    ],
)
def test_invalid_call_is_refused_with_a_reason_naming_the_field(raw, call_type, reason, field):
    with pytest.raises(InvalidEventError) as refused:
        parse(raw, call_type=call_type)
    assert (refused.value.reason, refused.value.field) == (reason, field)
    assert not isinstance(refused.value, PayloadTooLargeError)


@pytest.mark.parametrize("type_value", [None, "purchase", "TRACK", 1, ["track"]])
def test_batch_item_without_a_known_type_is_refused(type_value):
    with pytest.raises(InvalidEventError) as refused:
        parse({"type": type_value, "userId": "u", "event": "x"})
    assert refused.value.reason == "type must be one of track, identify, page, screen, group, alias"
    assert refused.value.field == "type"


def test_long_timestamp_text_is_cut_in_the_reason():
    with pytest.raises(InvalidEventError) as refused:
        parse({"userId": "u", "event": "x", "timestamp": "z" * 1000}, call_type=CallType.TRACK)
    assert refused.value.reason == f"timestamp is not an ISO-8601 date-time: {'z' * 40!r}"


def test_user_id_wins_over_anonymous_id_as_the_identity():
    event = parse({"userId": "u-1", "anonymousId": "a-1", "event": "x"}, call_type=CallType.TRACK)
    assert event.identity == ("u", "u-1")
    assert event.anonymous_id == "a-1"


def test_empty_user_id_falls_back_to_the_anonymous_identity():
    event = parse({"userId": "", "anonymousId": "a-1", "event": "x"}, call_type=CallType.TRACK)
    assert event.user_id is None
    assert event.identity == ("a", "a-1")


# --- message ids --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        {"userId": "u", "event": "x"},
        {"userId": "u", "event": "x", "messageId": None},
        {"userId": "u", "event": "x", "messageId": ""},
    ],
)
def test_missing_or_empty_message_id_is_assigned_from_the_id_maker(raw):
    assert parse(raw, call_type=CallType.TRACK).message_id == GENERATED_ID


@pytest.mark.parametrize("message_id", ["   ", "\t"])
def test_blank_message_id_is_refused_rather_than_replaced(message_id):
    with pytest.raises(InvalidEventError) as refused:
        parse({"userId": "u", "event": "x", "messageId": message_id}, call_type=CallType.TRACK)
    assert refused.value.reason == "messageId must not be empty"


def test_message_id_sent_by_the_client_is_kept_and_none_is_generated():
    made: list[str] = []

    def new_id() -> str:
        made.append("id")
        return "unused"

    event = parse({"userId": "u", "event": "x", "messageId": "ajs-123"}, call_type=CallType.TRACK, new_id=new_id)
    assert event.message_id == "ajs-123"
    assert made == []


# --- ids ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "call_type", "attribute", "expected"),
    [
        ({"userId": 42, "event": "x"}, CallType.TRACK, "user_id", "42"),
        ({"anonymousId": 0, "name": "Home"}, CallType.PAGE, "anonymous_id", "0"),
        ({"userId": "u", "groupId": 9}, CallType.GROUP, "group_id", "9"),
        ({"userId": "u", "previousId": -3}, CallType.ALIAS, "previous_id", "-3"),
    ],
)
def test_integer_ids_are_stored_as_strings(raw, call_type, attribute, expected):
    assert getattr(parse(raw, call_type=call_type), attribute) == expected


@pytest.mark.parametrize("key", ["userId", "anonymousId", "groupId", "previousId"])
@pytest.mark.parametrize("value", [True, False])
def test_boolean_ids_are_refused(key, value):
    raw = {"userId": "u", "anonymousId": "a", "groupId": "g", "previousId": "p", key: value}
    with pytest.raises(InvalidEventError) as refused:
        parse(raw, call_type=CallType.GROUP if key == "groupId" else CallType.ALIAS)
    assert (refused.value.reason, refused.value.field) == (f"{key} must be a string", key)


@pytest.mark.parametrize(
    ("key", "call_type"),
    [
        ("userId", CallType.TRACK),
        ("anonymousId", CallType.TRACK),
        ("messageId", CallType.TRACK),
        ("event", CallType.TRACK),
        ("groupId", CallType.GROUP),
        ("previousId", CallType.ALIAS),
    ],
)
@pytest.mark.parametrize("bad", ["\ud800", "ok\udfffok"])
def test_ids_and_names_holding_a_lone_surrogate_are_refused(key, call_type, bad):
    # Given a JSON body with "\ud800" in a field that ends up in a storage key or an index
    raw = {"userId": "u", "event": "x", "groupId": "g", "previousId": "p", key: bad}
    # When / Then
    with pytest.raises(InvalidEventError) as refused:
        parse(raw, call_type=call_type)
    assert (refused.value.reason, refused.value.field) == (f"{key} contains an invalid unicode character", key)


def test_non_ascii_ids_are_accepted():
    event = parse({"userId": "ユーザー-1 🎉", "event": "Achat effectué"}, call_type=CallType.TRACK)
    assert (event.user_id, event.event) == ("ユーザー-1 🎉", "Achat effectué")


# --- clock skew ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timestamp", "sent_at", "expected"),
    [
        # device clock right, event waited 5 s on the device: stored 5 s before receipt
        ("2026-11-29T11:59:50Z", "2026-11-29T11:59:55Z", "2026-11-29T11:59:55"),
        # device clock 1 h fast: the hour is removed, the 5 s wait is kept
        ("2026-11-29T13:00:00Z", "2026-11-29T13:00:05Z", "2026-11-29T11:59:55"),
        # device clock 1 day slow
        ("2026-11-28T11:00:00Z", "2026-11-28T11:30:00Z", "2026-11-29T11:30:00"),
        # offsets are honoured: 13:00+01:00 is 12:00Z
        ("2026-11-29T13:00:00+01:00", "2026-11-29T13:00:10+01:00", "2026-11-29T11:59:50"),
        # a time without an offset is UTC
        ("2026-11-29T10:00:00", "2026-11-29T10:00:01", "2026-11-29T11:59:59"),
    ],
)
def test_timestamp_is_received_at_minus_the_time_the_event_waited_on_the_device(timestamp, sent_at, expected):
    raw = {"userId": "u", "event": "x", "timestamp": timestamp, "sentAt": sent_at}
    event = parse(raw, call_type=CallType.TRACK)
    assert event.timestamp == at(expected)
    assert event.received_at == RECEIVED


def test_original_timestamp_and_sent_at_are_kept_as_sent():
    raw = {"userId": "u", "event": "x", "timestamp": "2026-11-29T13:00:00Z", "sentAt": "2026-11-29T13:00:05Z"}
    event = parse(raw, call_type=CallType.TRACK)
    assert (event.original_timestamp, event.sent_at) == (at("2026-11-29T13:00:00"), at("2026-11-29T13:00:05"))


def test_batch_sent_at_corrects_events_that_have_none():
    # Given a batch sent at 13:00:10 by a device whose clock is one hour fast
    envelope = BatchEnvelope(sent_at=at("2026-11-29T13:00:10"))
    # When
    event = parse(
        {"type": "track", "userId": "u", "event": "x", "timestamp": "2026-11-29T13:00:00Z"}, envelope=envelope
    )
    # Then
    assert event.timestamp == at("2026-11-29T11:59:50")
    assert event.sent_at == at("2026-11-29T13:00:10")


def test_event_sent_at_wins_over_the_batch_sent_at():
    envelope = BatchEnvelope(sent_at=at("2026-11-29T13:00:10"))
    raw = {"type": "track", "userId": "u", "event": "x", "timestamp": "2026-11-29T13:00:00Z"}
    event = parse({**raw, "sentAt": "2026-11-29T13:00:02Z"}, envelope=envelope)
    assert event.timestamp == at("2026-11-29T11:59:58")


def test_without_sent_at_the_client_timestamp_is_trusted():
    event = parse({"userId": "u", "event": "x", "timestamp": "2026-11-29T10:00:00Z"}, call_type=CallType.TRACK)
    assert event.timestamp == at("2026-11-29T10:00:00")
    assert event.sent_at is None


@pytest.mark.parametrize("sent_at", [None, "2026-11-29T10:00:00Z"])
def test_without_timestamp_the_event_is_dated_at_receipt(sent_at):
    event = parse({"userId": "u", "event": "x", "sentAt": sent_at}, call_type=CallType.TRACK)
    assert event.timestamp == RECEIVED
    assert event.original_timestamp is None


def test_correction_that_overflows_the_calendar_falls_back_to_the_client_timestamp():
    original = datetime(9999, 12, 31, tzinfo=UTC)
    corrected = corrected_timestamp(
        received_at=RECEIVED, sent_at=datetime(1, 1, 1, tzinfo=UTC), original_timestamp=original
    )
    assert corrected == original


# --- size limits --------------------------------------------------------------------------------------------------


def _event_of_size(size: int) -> dict[str, Any]:
    raw: dict[str, Any] = {"userId": "u", "event": "x", "properties": {"blob": ""}}
    raw["properties"]["blob"] = "x" * (size - encoded_size(raw))
    assert encoded_size(raw) == size
    return raw


def test_event_of_exactly_32_kb_is_accepted():
    event = parse(_event_of_size(MAX_EVENT_BYTES), call_type=CallType.TRACK)
    assert len(event.properties["blob"]) > 32_000


def test_event_one_byte_over_32_kb_is_refused_as_too_large():
    with pytest.raises(PayloadTooLargeError) as refused:
        parse(_event_of_size(MAX_EVENT_BYTES + 1), call_type=CallType.TRACK)
    assert refused.value.reason == "event is larger than 32 KB"


def test_event_size_is_counted_in_utf8_bytes_not_characters():
    # Given 16,400 two-byte characters: under 32 K characters, over 32 KB
    raw = {"userId": "u", "event": "x", "properties": {"blob": "é" * 16_400}}
    # When / Then
    with pytest.raises(PayloadTooLargeError):
        parse(raw, call_type=CallType.TRACK)


def test_size_limit_is_checked_before_any_field_rule():
    raw = {"event": 5, "properties": {"blob": "x" * MAX_EVENT_BYTES}}
    with pytest.raises(PayloadTooLargeError):
        parse(raw, call_type=CallType.TRACK)


@pytest.mark.parametrize("count", [0, 1, MAX_BATCH_EVENTS])
def test_batch_of_up_to_2500_events_is_accepted(count):
    assert len(batch_items({"batch": [{"type": "track"}] * count})) == count


def test_batch_of_2501_events_is_refused_as_too_large():
    with pytest.raises(PayloadTooLargeError) as refused:
        batch_items({"batch": [{"type": "track"}] * (MAX_BATCH_EVENTS + 1)})
    assert refused.value.reason == "batch has 2501 events; the limit is 2500"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([{"type": "track"}], "body must be a JSON object"),
        ({"events": []}, "batch must be an array of events"),
        ({"batch": {"0": {}}}, "batch must be an array of events"),
        ({"batch": None}, "batch must be an array of events"),
    ],
)
def test_batch_body_must_be_an_object_with_a_batch_array(body, reason):
    with pytest.raises(InvalidEventError) as refused:
        batch_items(body)
    assert refused.value.reason == reason
    assert not isinstance(refused.value, PayloadTooLargeError)


# --- batch envelope -----------------------------------------------------------------------------------------------


def test_batch_context_and_integrations_are_merged_into_each_event_and_event_keys_win():
    # Given
    envelope = parse_envelope(
        {
            "batch": [],
            "sentAt": "2026-11-29T12:00:00Z",
            "context": {"library": {"name": "analytics.js"}, "ip": "198.51.100.1"},
            "integrations": {"All": False, "Mixpanel": True},
        }
    )
    raw = {
        "type": "track",
        "userId": "u",
        "event": "x",
        "context": {"ip": "203.0.113.9"},
        "integrations": {"All": True},
    }
    # When
    event = parse(raw, envelope=envelope)
    # Then
    assert event.context == {"library": {"name": "analytics.js"}, "ip": "203.0.113.9"}
    assert event.integrations == {"All": True, "Mixpanel": True}


def test_batch_context_is_used_when_the_event_has_none():
    envelope = BatchEnvelope(context={"library": {"name": "analytics-python"}})
    event = parse({"type": "identify", "userId": "u"}, envelope=envelope)
    assert event.context == {"library": {"name": "analytics-python"}}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"sentAt": "soon"}, "sentAt is not an ISO-8601 date-time: 'soon'"),
        ({"context": "web"}, "context must be a JSON object"),
        ({"integrations": ["All"]}, "integrations must be a JSON object"),
    ],
)
def test_bad_batch_envelope_is_refused(body, reason):
    with pytest.raises(InvalidEventError) as refused:
        parse_envelope({"batch": [], **body})
    assert refused.value.reason == reason


def test_batch_without_envelope_fields_has_an_empty_envelope():
    assert parse_envelope({"batch": []}) == BatchEnvelope()


# --- stored form --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("call_type", "raw", "attribute", "expected"), MINIMAL_CALLS)
def test_payload_round_trips_to_the_same_event(call_type, raw, attribute, expected):
    # Given a full event of each type
    full = {
        **raw,
        "anonymousId": "a-9",
        "messageId": "m#1",
        "timestamp": "2026-11-29T10:00:00.123Z",
        "sentAt": "2026-11-29T10:00:01.456Z",
        "properties": {"price": 19.99, "tags": ["a", "b"], "nested": {"ok": True, "none": None}},
        "context": {"ip": "203.0.113.9"},
        "integrations": {"All": False},
    }
    event = parse(full, call_type=call_type)
    # When
    rebuilt = event_from_payload(event.to_payload(), source_id="web")
    # Then
    assert rebuilt == event
    assert getattr(rebuilt, attribute) == expected


def test_payload_is_segment_shaped_camel_case_json():
    raw = {"userId": "u", "event": "Signed Up", "timestamp": "2026-11-29T10:00:00Z", "properties": {"plan": "pro"}}
    payload = parse(raw, call_type=CallType.TRACK).to_payload()
    assert payload == {
        "type": "track",
        "messageId": GENERATED_ID,
        "timestamp": "2026-11-29T10:00:00.000Z",
        "originalTimestamp": "2026-11-29T10:00:00.000Z",
        "receivedAt": "2026-11-29T12:00:00.000Z",
        "userId": "u",
        "event": "Signed Up",
        "properties": {"plan": "pro"},
    }


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 11, 29, 12, 0, 0, 999_999, tzinfo=UTC), "2026-11-29T12:00:00.999Z"),
        (datetime(2026, 11, 29, 16, 0, 0, 5_000, tzinfo=timezone(timedelta(hours=2))), "2026-11-29T14:00:00.005Z"),
        (datetime(2026, 11, 29, 1, 0, tzinfo=UTC) + timedelta(hours=-2), "2026-11-28T23:00:00.000Z"),
    ],
)
def test_timestamps_are_written_as_utc_with_milliseconds(moment, text):
    assert format_timestamp(moment) == text


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def test_nesting_is_limited_to_32_levels_without_recursion():
    # Given an event whose properties nest 31 levels (the event itself is level 1) and one nested 5,000 levels
    ok = {"userId": "u", "event": "x", "properties": nested(31)}
    deep = {"userId": "u", "event": "x", "properties": nested(5000)}
    # Then the first is valid and the second is refused with a reason, never a RecursionError
    assert parse(ok, call_type=CallType.TRACK).properties
    with pytest.raises(InvalidEventError, match="nested deeper than 32 levels"):
        parse(deep, call_type=CallType.TRACK)


def test_money_that_is_not_a_number_is_no_amount_rather_than_a_rejection():
    event = parse(
        {"userId": "u", "event": "x", "properties": {"price": "free", "revenue": "12.50"}}, call_type=CallType.TRACK
    )
    assert event.properties == {"price": "free", "revenue": "12.50"}


def test_an_identify_without_traits_takes_them_from_context_traits_as_rudderstack_sends_them():
    rudder = parse({"type": "identify", "userId": "u-1", "context": {"traits": {"plan": "pro"}}})
    segment = parse({"type": "identify", "userId": "u-1", "traits": {"plan": "max"}, "context": {"traits": {"x": 1}}})
    track = parse({"type": "track", "event": "E", "userId": "u-1", "context": {"traits": {"plan": "pro"}}})
    assert (rudder.traits, segment.traits, track.traits) == ({"plan": "pro"}, {"plan": "max"}, {})

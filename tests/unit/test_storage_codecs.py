"""The single table's key formats, item codecs and DynamoDB item-size arithmetic (no DynamoDB needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from shared.domain.events import CallType, TrackingEvent, parse_event
from shared.domain.failures import failed_event, new_failure_id
from shared.domain.sources import WebhookMapping
from shared.storage import keys
from shared.storage.capacity import item_size, value_size, write_units
from shared.storage.items import (
    decode_json,
    encode_json,
    event_key,
    event_to_item,
    failed_to_item,
    item_to_event,
    item_to_failed,
    item_to_source,
    source_to_item,
)
from shared.storage.schema import TTL_ATTRIBUTE
from tests.builders import a_source, a_track

RECEIVED = datetime(2026, 11, 29, 12, 0, 0, 250_000, tzinfo=UTC)


def an_event(
    raw: dict[str, Any], *, received_at: datetime = RECEIVED, call_type: CallType | None = None
) -> TrackingEvent:
    return parse_event(raw, source_id="web", received_at=received_at, new_id=lambda: "generated", call_type=call_type)


# --- keys ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "identifier", "pk"),
    [("u", "user-1", "ID#u#user-1"), ("a", "anon#with#hashes", "ID#a#anon#with#hashes"), ("u", "ü 🎉", "ID#u#ü 🎉")],
)
def test_identity_key_round_trips(kind, identifier, pk):
    assert keys.identity_pk(kind, identifier) == pk
    assert keys.parse_identity_pk(pk) == (kind, identifier)


def test_identity_kind_is_user_or_anonymous_only():
    with pytest.raises(ValueError, match="identity kind must be 'u' or 'a'"):
        keys.identity_pk("x", "user-1")


@pytest.mark.parametrize("pk", ["EVT#web#m-1", "SOURCES#x#y", "ID"])
def test_non_identity_key_is_not_parsed_as_one(pk):
    with pytest.raises(ValueError):
        keys.parse_identity_pk(pk)


@pytest.mark.parametrize("message_id", ["m-1", "msg#1", "##", "a#b#c#", "#leading"])
def test_event_key_round_trips_message_ids_containing_the_separator(message_id):
    sk = keys.event_sk("web", message_id)
    assert sk == f"EVT#web#{message_id}"
    assert sk.startswith(keys.EVENT_SK_PREFIX)
    assert keys.parse_event_sk(sk) == ("web", message_id)


@pytest.mark.parametrize("sk", ["SOURCE#web", "FAILED#101112345678#abc", "EVT"])
def test_non_event_key_is_not_parsed_as_one(sk):
    with pytest.raises(ValueError):
        keys.parse_event_sk(sk)


def test_source_and_write_key_keys_have_their_documented_form():
    assert (keys.SOURCES_PK, keys.source_sk("web")) == ("SOURCES", "SOURCE#web")
    assert keys.source_sk("web").startswith(keys.SOURCE_SK_PREFIX)
    assert (keys.write_key_pk("ab12"), keys.WRITE_KEY_SK) == ("WRITEKEY#ab12", "WRITEKEY")


def test_failed_event_id_maps_to_its_day_partition_and_time_sort_key():
    failure_id = new_failure_id(datetime(2026, 11, 29, 10, 11, 12, 345_678, tzinfo=UTC), "c0ffee")
    assert failure_id == "2026-11-29.101112345678.c0ffee"
    assert keys.failed_key(failure_id) == ("FAILED#2026-11-29", "FAILED#101112345678#c0ffee")
    assert keys.failed_key(failure_id)[1].startswith(keys.FAILED_SK_PREFIX)


def test_failed_event_ids_sort_by_time_within_a_day():
    moments = [datetime(2026, 11, 29, h, m, s, us, tzinfo=UTC) for h, m, s, us in [(9, 59, 59, 999_999), (10, 0, 0, 1)]]
    sort_keys = [keys.failed_key(new_failure_id(moment, "zzz"))[1] for moment in moments]
    assert sort_keys == sorted(sort_keys)


@pytest.mark.parametrize(
    "failure_id",
    [
        "nonsense",
        "2026-11-29",
        "2026-13-01.101112345678.x",
        "2026-11-29.1011.x",
        "2026-11-29.10111234567x.x",
        "2026-11-29.101112345678.",
        "../../etc.101112345678.x",
    ],
)
def test_malformed_failed_event_id_is_refused(failure_id):
    with pytest.raises(ValueError):
        keys.failed_key(failure_id)


# --- events -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "call_type"),
    [
        (a_track(messageId="m#1"), CallType.TRACK),
        ({"anonymousId": "a-1", "name": "Home", "properties": {"path": "/"}}, CallType.PAGE),
        ({"userId": "u-1", "traits": {"email": "x@example.com", "age": 41}}, CallType.IDENTIFY),
        ({"userId": "u-1", "groupId": "acme", "traits": {"seats": 12}}, CallType.GROUP),
        ({"userId": "u-1", "previousId": "a-1"}, CallType.ALIAS),
        ({"anonymousId": "a-2", "name": "Settings", "context": {"app": {"build": "1.2"}}}, CallType.SCREEN),
    ],
)
def test_event_item_round_trips_to_the_same_event(raw, call_type):
    event = an_event(raw, call_type=call_type)
    assert item_to_event(event_to_item(event)) == event


def test_event_item_is_keyed_by_identity_and_source_message_id():
    # Given
    event = an_event(
        {"userId": "u-1", "anonymousId": "a-1", "event": "Signed Up", "messageId": "m-1"}, call_type=CallType.TRACK
    )
    # When
    item = event_to_item(event)
    # Then
    assert {name: item[name] for name in ("PK", "SK", "entity", "ts", "type", "src", "name")} == {
        "PK": "ID#u#u-1",
        "SK": "EVT#web#m-1",
        "entity": "event",
        "ts": "2026-11-29T12:00:00.250Z",
        "type": "track",
        "src": "web",
        "name": "Signed Up",
    }
    assert event_key(event) == {"PK": item["PK"], "SK": item["SK"]}


def test_anonymous_event_is_filed_under_its_anonymous_id():
    event = an_event({"anonymousId": "a-1", "name": "Home"}, call_type=CallType.PAGE)
    item = event_to_item(event)
    assert (item["PK"], item["name"]) == ("ID#a#a-1", "Home")


def test_event_without_a_name_has_no_name_attribute():
    assert "name" not in event_to_item(an_event({"userId": "u-1"}, call_type=CallType.IDENTIFY))


def test_a_retry_received_later_has_the_same_key_so_it_is_deduplicated():
    # Given the same SDK call received twice, a minute apart (so its corrected timestamp differs)
    call = a_track()
    first = an_event(call)
    retry = an_event(call, received_at=RECEIVED + timedelta(minutes=1))
    # When / Then
    assert first.timestamp != retry.timestamp
    assert event_key(first) == event_key(retry)


def test_event_item_expires_after_the_retention_counted_from_receipt():
    item = event_to_item(an_event(a_track()), retention=timedelta(days=400))
    assert item[TTL_ATTRIBUTE] == int(datetime(2028, 1, 3, 12, 0, 0, tzinfo=UTC).timestamp())
    assert isinstance(item[TTL_ATTRIBUTE], int)


def test_event_item_without_retention_never_expires():
    assert TTL_ATTRIBUTE not in event_to_item(an_event(a_track()))


def test_typical_sdk_event_fits_in_one_write_unit():
    assert write_units(event_to_item(an_event(a_track()), retention=timedelta(days=400))) == 1


def test_event_with_a_lone_surrogate_in_its_properties_round_trips():
    event = an_event(a_track(properties={"note": "broken \ud800 pair", "ok": "é"}))
    assert item_to_event(event_to_item(event)).properties == {"note": "broken \ud800 pair", "ok": "é"}


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, None, True, {"b": "é🎉"}]},
        [],
        "plain",
        12345678901234567890,
        {"lone": "\udc00", "emoji": "🎉"},
    ],
)
def test_json_codec_round_trips(value):
    blob = encode_json(value)
    assert blob[:1] == b"\x02"  # the newest codec
    assert decode_json(blob) == value


def test_json_codec_compresses_typical_payloads():
    payload = an_event(a_track()).to_payload()
    assert len(encode_json(payload)) < len(json.dumps(payload)) // 2


def test_unknown_body_codec_is_refused():
    with pytest.raises(ValueError, match="unknown body codec"):
        decode_json(b"\x07whatever")


def test_bodies_written_with_the_first_codec_still_decode():
    import zlib

    from shared.storage.blobs import _ZDICT_V1

    compressor = zlib.compressobj(zdict=_ZDICT_V1)
    stored_by_v1 = b"\x01" + compressor.compress(b'{"type":"track","event":"A"}') + compressor.flush()
    assert decode_json(stored_by_v1) == {"type": "track", "event": "A"}


def test_every_codecs_dictionary_is_frozen_since_blobs_need_its_exact_bytes_to_decode():
    import hashlib

    from shared.storage.blobs import _ZDICTS

    pinned = {codec: hashlib.sha256(zdict).hexdigest()[:16] for codec, zdict in _ZDICTS.items()}
    assert pinned == {
        b"\x01": "4af55e12b2e7c677",
        b"\x02": "02a699aaf54b8a61",
        b"\x03": "b9b78fc004603ee1",  # customer bodies
        b"\x04": "1d1fe7b460a9b693",  # analytics cells, a funnel step's times in a cell of their own
        b"\x05": "70e6638504ae0948",  # analytics cells, a funnel day's times in the day's cell
    }


def test_profile_bodies_have_their_own_codec_and_decode_like_any_body():
    from shared.storage.blobs import encode_profile_json

    body = {"customer_id": "u:1", "traits": {"email": "a@b.c", "lone": "\udc00"}, "$$page": 3}
    blob = encode_profile_json(body)
    assert blob[:1] == b"\x03"
    assert decode_json(blob) == body


def _a_customer_item() -> dict[str, Any]:
    from shared.domain.profiles import CustomerProfile, apply_events
    from shared.ports import StoredProfile
    from shared.storage.items import profile_to_item

    events = [
        an_event(a_track(event=name, userId="u1", properties={"product_id": "p1", "price": 9.5}))
        for name in ("Product Viewed", "Product Added", "Order Completed")
    ]
    profile = apply_events(CustomerProfile(customer_id="u:u1", identities=("u:u1",)), events)
    return profile_to_item(StoredProfile(profile, version=3, applied={"u:u1": "1" * 21}))


def test_customer_items_written_with_the_event_codec_still_decode():
    from shared.storage.items import item_to_profile

    item = _a_customer_item()
    assert item["body"][:1] == b"\x03"
    written_before = {**item, "body": encode_json(decode_json(item["body"]))}
    assert written_before["body"][:1] == b"\x02"
    assert item_to_profile(written_before) == item_to_profile(item)


def test_the_profile_codec_stores_a_customer_body_in_fewer_bytes_than_the_event_codec():
    item = _a_customer_item()
    assert len(item["body"]) < len(encode_json(decode_json(item["body"]))) * 0.85


# --- sources and failed events ------------------------------------------------------------------------------------

CREATED = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"hash_emails": True, "link_secrets": ("ffs_new", "ffs_old")},
        {
            "webhook_mapping": WebhookMapping(
                events="$.orders",
                event="$headers.x-topic",
                event_names={"orders/create": "Order Completed"},
                properties={"order_id": "$.id"},
            )
        },
    ],
    ids=["plain", "hashing-rotated", "webhook-mapping"],
)
def test_source_item_round_trips(overrides):
    source, _ = a_source("shop", created_at=CREATED, **overrides)
    item = source_to_item(source)
    assert (item["PK"], item["SK"]) == ("SOURCES", "SOURCE#shop")
    assert item_to_source(item) == source


def test_source_item_never_holds_a_write_key_only_its_hash():
    source, write_key = a_source("shop", created_at=CREATED)
    assert write_key not in repr(source_to_item(source))


@pytest.mark.parametrize(
    ("raw", "source_id", "message_id"),
    [(b'{"event": 5}', "web", "m-1"), (b"\xff\xfe not even utf-8", None, None), (b"x" * 70_000, "web", None)],
    ids=["with-ids", "anonymous-binary", "truncated"],
)
def test_failed_event_item_round_trips(raw, source_id, message_id):
    # Given
    failure = failed_event(
        failure_id=new_failure_id(RECEIVED, "abc123"),
        received_at=RECEIVED,
        route="/v1/batch",
        reason="event must be a string",
        status=400,
        raw=raw,
        source_id=source_id,
        message_id=message_id,
    )
    # When
    item = failed_to_item(failure, retention=timedelta(days=30))
    # Then
    assert item_to_failed(item) == failure
    assert (item["PK"], item["SK"]) == ("FAILED#2026-11-29", "FAILED#120000250000#abc123")
    assert item[TTL_ATTRIBUTE] == int((RECEIVED + timedelta(days=30)).timestamp())


def test_failed_event_keeps_at_most_64_kb_of_raw_input_and_says_so():
    failure = failed_event(
        failure_id="x", received_at=RECEIVED, route="/v1/track", reason="r", status=413, raw="é" * 40_000
    )
    assert (len(failure.raw), failure.truncated) == (64 * 1024, True)


# --- capacity -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("", 0),
        ("abc", 3),
        ("é", 2),
        ("🎉", 4),
        (b"\x00\x01\x02", 3),
        (bytearray(10), 10),
        (True, 1),
        (None, 1),
        (0, 1),
        (7, 2),
        (12, 2),
        (123, 3),
        (-123, 3),
        (100, 2),  # trailing zeros are trimmed: one significant digit
        (1.5, 2),
        (-0.5, 2),
        (0.001, 2),  # leading zeros are trimmed
        (123456.789, 6),
        (Decimal("12345678901234567890"), 11),
        ({}, 3),
        ([], 3),
        ({"a": "xy", "bb": 1}, 12),  # 3 + (1 + 2 + 1) + (2 + 2 + 1)
        (["a", 12], 8),  # 3 + (1 + 1) + (2 + 1)
        ({"m": {"k": "v"}}, 11),  # 3 + (1 + (3 + 1 + 1 + 1) + 1)
        ({"ab", "c"}, 3),
    ],
)
def test_value_size_is_what_dynamodb_bills(value, size):
    assert value_size(value) == size


def test_values_dynamodb_cannot_hold_are_refused():
    with pytest.raises(TypeError, match="not a DynamoDB value: object"):
        value_size(object())


def test_item_size_counts_attribute_names_and_values():
    assert item_size({"PK": "ID#u#1", "n": 5, "body": b"\x01\x02"}) == (2 + 6) + (1 + 2) + (4 + 2)


@pytest.mark.parametrize(
    ("padding", "units"),
    [(0, 1), (1023, 1), (1024, 2), (2047, 2), (2048, 3)],
    ids=["tiny", "exactly-1024", "1025", "exactly-2048", "2049"],
)
def test_write_units_round_up_per_started_kilobyte(padding, units):
    item = {"b": "x" * padding}  # 1 byte of name + padding
    assert write_units(item) == units


def test_empty_item_still_costs_one_write_unit():
    assert write_units({}) == 1


def test_a_source_with_retiring_write_keys_round_trips():
    from datetime import UTC, datetime, timedelta

    from shared.domain.sources import rotate_write_key
    from shared.storage.items import item_to_source, source_to_item
    from tests.builders import a_source

    now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    source, _ = a_source("web", created_at=now)
    rotated = rotate_write_key(source, "ffk_" + "n" * 32, now=now, grace=timedelta(hours=24))
    assert item_to_source(source_to_item(rotated)) == rotated

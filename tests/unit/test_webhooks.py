"""Inbound webhooks: signatures within a time window, mapping paths, and provider payloads mapped to events."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.domain.errors import AuthenticationError, InvalidEventError
from shared.domain.sources import WebhookMapping
from shared.domain.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    map_webhook,
    mapping_from_dict,
    resolve,
    sign_webhook,
    verify_webhook,
)

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
STAMP = int(NOW.timestamp())
SECRET = "ffs_webhook_new"
OLD_SECRET = "ffs_webhook_old"
BODY = b'{"id": 820982911946154508, "topic": "orders/create"}'


def headers_for(body: bytes = BODY, secret: str = SECRET, stamp: int = STAMP) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(stamp), SIGNATURE_HEADER: sign_webhook(body, secret, stamp)}


def refusal(body: bytes, headers: Mapping[str, str], secrets: tuple[str, ...] = (SECRET, OLD_SECRET)) -> str | None:
    """The reason the webhook is refused, or None when it is accepted."""
    try:
        verify_webhook(body, headers, secrets, now=NOW)
    except AuthenticationError as exc:
        return str(exc)
    return None


# --- signatures ---------------------------------------------------------------------------------------------------


def test_signature_is_v1_hex_hmac_sha256_of_timestamp_dot_body():
    signature = sign_webhook(b"{}", "key", 1_700_000_000)
    # HMAC-SHA256("key", "1700000000.{}"), computed independently
    assert signature == "v1=" + hmac.new(b"key", b"1700000000.{}", hashlib.sha256).hexdigest()


@pytest.mark.parametrize("secret", [SECRET, OLD_SECRET], ids=["newest", "previous"])
def test_webhook_signed_with_either_active_secret_is_accepted(secret):
    assert refusal(BODY, headers_for(secret=secret)) is None


def test_webhook_signed_with_another_secret_is_refused():
    assert refusal(BODY, headers_for(secret="ffs_attacker")) == "webhook signature does not match"


@pytest.mark.parametrize(
    "body",
    [BODY.replace(b"508", b"509"), BODY + b" ", b"", BODY[:-1]],
    ids=["changed", "appended", "emptied", "truncated"],
)
def test_webhook_with_a_tampered_body_is_refused(body):
    assert refusal(body, headers_for(BODY)) == "webhook signature does not match"


@pytest.mark.parametrize("offset", [-299, -300, 0, 299, 300], ids=lambda o: f"{o:+d}s")
def test_webhook_within_five_minutes_of_now_is_accepted(offset):
    assert refusal(BODY, headers_for(stamp=STAMP + offset)) is None


@pytest.mark.parametrize("offset", [-301, 301, -86_400], ids=["stale", "future", "replayed-next-day"])
def test_webhook_stamped_more_than_five_minutes_away_is_refused_even_when_correctly_signed(offset):
    reason = refusal(BODY, headers_for(stamp=STAMP + offset))
    assert reason == "webhook timestamp is more than 300 s away from now"


def test_timestamp_cannot_be_moved_without_breaking_the_signature():
    # Given a webhook captured 10 minutes ago, replayed with a fresh timestamp header
    headers = headers_for(stamp=STAMP - 600) | {TIMESTAMP_HEADER: str(STAMP)}
    # When / Then
    assert refusal(BODY, headers) == "webhook signature does not match"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {TIMESTAMP_HEADER: str(STAMP)},
        {SIGNATURE_HEADER: sign_webhook(BODY, SECRET, STAMP)},
        {TIMESTAMP_HEADER: "", SIGNATURE_HEADER: sign_webhook(BODY, SECRET, STAMP)},
    ],
    ids=["none", "no-signature", "no-timestamp", "empty-timestamp"],
)
def test_webhook_without_its_headers_is_refused(headers):
    assert refusal(BODY, headers) == "webhook must carry x-footfall-timestamp and x-footfall-signature headers"


@pytest.mark.parametrize(
    "stamp", ["-1764417600", "1764417600.0", "soon", "1" * 13, " 1764417600", "²", "١٧٦٤٤١٧٦٠٠", "0x69"]
)
def test_timestamp_that_is_not_unix_seconds_is_refused(stamp):
    headers = {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign_webhook(BODY, SECRET, STAMP)}
    assert refusal(BODY, headers) == "x-footfall-timestamp must be Unix seconds"


@pytest.mark.parametrize(
    "signature_header",
    [
        "v1=deadbeef, {valid}",
        "{valid},v1=deadbeef",
        "v0=abc, {valid}",
    ],
)
def test_any_one_matching_v1_signature_in_the_header_is_enough(signature_header):
    valid = sign_webhook(BODY, SECRET, STAMP)
    headers = {TIMESTAMP_HEADER: str(STAMP), SIGNATURE_HEADER: signature_header.format(valid=valid)}
    assert refusal(BODY, headers) is None


@pytest.mark.parametrize("signature_header", ["{bare}", "v2={bare}", "sha256={bare}", "v1="])
def test_signature_without_the_v1_scheme_is_refused(signature_header):
    bare = sign_webhook(BODY, SECRET, STAMP)[3:]
    headers = {TIMESTAMP_HEADER: str(STAMP), SIGNATURE_HEADER: signature_header.format(bare=bare)}
    assert refusal(BODY, headers) == "webhook signature does not match"


@pytest.mark.parametrize("signature_header", ["v1=é", "v1=\u00e9" + "0" * 63, "v1=ab, v1=ÿ"])
def test_non_ascii_signature_is_refused_as_not_matching(signature_header):
    headers = {TIMESTAMP_HEADER: str(STAMP), SIGNATURE_HEADER: signature_header}
    assert refusal(BODY, headers) == "webhook signature does not match"


def test_a_source_without_webhook_secrets_accepts_no_webhook():
    assert refusal(BODY, headers_for(), secrets=()) == "webhook signature does not match"


# --- paths --------------------------------------------------------------------------------------------------------

ORDER = {
    "id": 42,
    "email": "jane@example.com",
    "customer": {"id": 7, "tags": ["vip", "newsletter"]},
    "line_items": [{"sku": "SKU-A", "qty": 1}, {"sku": "SKU-B", "qty": 3}],
    "note": None,
}
HEADERS = {"x-shopify-topic": "orders/create", "x-shopify-shop-domain": "shop.example"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.id", 42),
        ("$.customer.id", 7),
        ("$.customer.tags[1]", "newsletter"),
        ("$.line_items[1].sku", "SKU-B"),
        ("$.line_items[0]", {"sku": "SKU-A", "qty": 1}),
        ("$", ORDER),
        ("$headers.x-shopify-topic", "orders/create"),
        ("$headers.X-Shopify-Topic", "orders/create"),
        ("shopify", "shopify"),
        ("Order Completed", "Order Completed"),
    ],
)
def test_path_finds_the_value(path, expected):
    assert resolve(path, ORDER, HEADERS) == expected


@pytest.mark.parametrize(
    "path",
    [
        "$.missing",
        "$.customer.missing",
        "$.line_items[2].sku",
        "$.line_items.sku",
        "$.customer[0]",
        "$.id.deeper",
        "$.note.deeper",
        "$..id",
        "$.id]",
        "$id",
        "$.line_items[-1]",
        "$.line_items[x]",
        "$headers.x-missing",
    ],
)
def test_path_to_nothing_resolves_to_none(path):
    assert resolve(path, ORDER, HEADERS) is None


def test_path_indexes_into_a_top_level_array():
    assert resolve("$[1].sku", ORDER["line_items"], {}) == "SKU-B"


# --- mapping ------------------------------------------------------------------------------------------------------

SHOPIFY = WebhookMapping(
    events="$.orders",
    event="$headers.x-shopify-topic",
    event_names={"orders/create": "Order Completed", "orders/cancelled": "Order Cancelled"},
    user_id="$.customer.id",
    timestamp="$.created_at",
    properties={
        "order_id": "$.id",
        "revenue": "$.total_price",
        "currency": "$.currency",
        "first_sku": "$.line_items[0].sku",
        "coupon": "$.discount_codes[0].code",
        "channel": "shopify",
    },
    traits={"email": "$.email"},
    context={"shop": "$headers.x-shopify-shop-domain"},
)


def shopify_payload(*order_ids: int) -> dict[str, Any]:
    return {
        "orders": [
            {
                "id": order_id,
                "email": f"buyer{order_id}@example.com",
                "created_at": "2026-11-29T11:58:00+01:00",
                "total_price": "59.90",
                "currency": "EUR",
                "customer": {"id": 7},
                "line_items": [{"sku": "SKU-A"}],
            }
            for order_id in order_ids
        ]
    }


def test_provider_payload_is_mapped_to_one_segment_call_per_record():
    # Given
    payload = shopify_payload(1001, 1002)
    # When
    raws = map_webhook(payload, HEADERS, SHOPIFY, source_id="shopify")
    # Then
    assert [{key: value for key, value in raw.items() if key != "messageId"} for raw in raws] == [
        {
            "type": "track",
            "event": "Order Completed",
            "userId": 7,
            "timestamp": "2026-11-29T11:58:00+01:00",
            "properties": {
                "order_id": order_id,
                "revenue": "59.90",
                "currency": "EUR",
                "first_sku": "SKU-A",
                "channel": "shopify",
            },
            "traits": {"email": f"buyer{order_id}@example.com"},
            "context": {"shop": "shop.example"},
        }
        for order_id in (1001, 1002)
    ]


def test_provider_event_name_without_a_rename_is_kept():
    raws = map_webhook(shopify_payload(1), {**HEADERS, "x-shopify-topic": "orders/paid"}, SHOPIFY, source_id="s")
    assert raws[0]["event"] == "orders/paid"


def test_missing_event_name_leaves_the_call_without_event():
    raws = map_webhook(shopify_payload(1), {}, SHOPIFY, source_id="s")
    assert "event" not in raws[0]
    assert raws[0]["context"] == {}


def test_mapped_message_id_is_used_as_a_string():
    mapping = WebhookMapping(event="Ticket Created", user_id="$.requester", message_id="$.id")
    (raw,) = map_webhook({"id": 987654321, "requester": "u-1"}, {}, mapping, source_id="zendesk")
    assert raw["messageId"] == "987654321"


def test_payload_without_events_path_is_one_event():
    mapping = WebhookMapping(type="identify", user_id="$.user.id", traits={"plan": "$.user.plan"})
    raws = map_webhook({"user": {"id": "u-1", "plan": "pro"}}, {}, mapping, source_id="crm")
    assert [{k: v for k, v in raw.items() if k != "messageId"} for raw in raws] == [
        {"type": "identify", "userId": "u-1", "properties": {}, "traits": {"plan": "pro"}, "context": {}}
    ]


def message_id(payload: Any, source_id: str = "shopify") -> str:
    return map_webhook(payload, HEADERS, SHOPIFY, source_id=source_id)[0]["messageId"]


def test_redelivered_payload_gets_the_same_message_id_so_it_is_deduplicated():
    first = message_id(shopify_payload(1001))
    assert first == message_id(json.loads(json.dumps(shopify_payload(1001))))
    assert first.startswith("wh-")
    assert len(first) == len("wh-") + 32


@pytest.mark.parametrize(
    ("other", "source_id"),
    [
        (shopify_payload(1002), "shopify"),
        ({"orders": [{**shopify_payload(1001)["orders"][0], "total_price": "59.91"}]}, "shopify"),
        (shopify_payload(1001), "another-shop"),
    ],
    ids=["other-order", "same-order-other-content", "same-order-other-source"],
)
def test_different_payload_or_source_gets_a_different_message_id(other, source_id):
    assert message_id(shopify_payload(1001)) != message_id(other, source_id)


def test_records_of_one_payload_get_distinct_message_ids():
    raws = map_webhook(shopify_payload(1, 2, 3), HEADERS, SHOPIFY, source_id="shopify")
    assert len({raw["messageId"] for raw in raws}) == 3


@pytest.mark.parametrize("payload", [{"orders": {"id": 1}}, {"orders": None}, {}, [1, 2]])
def test_events_path_that_is_not_an_array_is_refused(payload):
    with pytest.raises(InvalidEventError) as refused:
        map_webhook(payload, HEADERS, SHOPIFY, source_id="shopify")
    assert refused.value.reason == "webhook mapping path $.orders does not point to an array"


def test_webhook_with_more_than_500_events_is_refused():
    with pytest.raises(InvalidEventError) as refused:
        map_webhook({"orders": [{}] * 501}, HEADERS, SHOPIFY, source_id="shopify")
    assert refused.value.reason == "webhook carries more than 500 events"


def test_webhook_with_500_events_is_mapped():
    assert len(map_webhook({"orders": [{"id": n} for n in range(500)]}, HEADERS, SHOPIFY, source_id="s")) == 500


def test_mapping_is_read_from_its_json_form():
    data = {
        "events": "$.orders",
        "event": "$headers.x-shopify-topic",
        "event_names": {"orders/create": "Order Completed"},
        "user_id": "$.customer.id",
        "properties": {"order_id": "$.id"},
    }
    assert mapping_from_dict(data) == WebhookMapping(
        events="$.orders",
        event="$headers.x-shopify-topic",
        event_names={"orders/create": "Order Completed"},
        user_id="$.customer.id",
        properties={"order_id": "$.id"},
    )


def test_mapping_with_unknown_keys_is_refused_naming_them():
    with pytest.raises(InvalidEventError) as refused:
        mapping_from_dict({"event": "$.topic", "userid": "$.user", "props": {}})
    assert refused.value.reason == "unknown webhook mapping keys: props, userid"


@pytest.mark.parametrize("key", ["event_names", "properties", "traits", "context"])
def test_mapping_with_a_non_object_table_is_refused(key):
    with pytest.raises(InvalidEventError) as refused:
        mapping_from_dict({key: ["$.id"]})
    assert refused.value.reason == f"webhook mapping {key} must be an object"

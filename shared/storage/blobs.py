"""Compressed JSON blobs: how event and profile bodies and analytics cells are stored (zlib with preset
dictionaries, a codec byte first), and binary attributes whatever their transport (bytes from boto3, base64 text in
Lambda stream events).

A dictionary is frozen once anything was written with it: a blob needs the very same bytes to decode, so a better
dictionary takes a new codec byte (tests/unit/test_storage_codecs.py pins them)."""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Callable
from typing import Any

# Event bodies are zlib-compressed with a preset dictionary of the strings Segment events repeat (field names,
# e-commerce spec properties, analytics.js context), which keeps a typical SDK event well under one write unit
# (1 KB). The first byte names the codec: new bodies are written with the newest, every older one still reads.
_CODEC_ZLIB_V1 = b"\x01"
_ZDICT_V1 = json.dumps(
    {
        "type": "track",
        "event": "Product Viewed",
        "name": "",
        "messageId": "",
        "userId": "",
        "anonymousId": "",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "originalTimestamp": "2026-01-01T00:00:00.000Z",
        "sentAt": "2026-01-01T00:00:00.000Z",
        "receivedAt": "2026-01-01T00:00:00.000Z",
        "properties": {
            "product_id": "",
            "sku": "",
            "category": "",
            "price": 0,
            "quantity": 1,
            "currency": "USD",
            "revenue": 0,
            "total": 0,
            "order_id": "",
            "cart_id": "",
            "url": "https://",
            "path": "/",
            "referrer": "",
            "title": "",
            "search": "",
        },
        "context": {
            "library": {"name": "analytics-python", "version": ""},
            "ip": "",
            "locale": "en-US",
            "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/ Safari/537.36",
            "page": {"path": "/", "referrer": "", "search": "", "title": "", "url": "https://"},
            "campaign": {"name": "", "source": "", "medium": "", "term": "", "content": ""},
            "traits": {"email": ""},
        },
        "traits": {"email": "", "name": "", "firstName": "", "lastName": "", "plan": ""},
        "integrations": {},
        "Order Completed": "",
        "Product Added": "",
        "Checkout Started": "",
        "Email Opened": "",
        "Email Link Clicked": "",
        "Audience Entered": "",
    },
    separators=(",", ":"),
).encode()
_CODEC_ZLIB_V2 = b"\x02"
# v2 adds the e-commerce spec's order fields and analytics.js's browser context; zlib looks back from the end of
# the dictionary, so the most frequent strings come last.
_ZDICT_V2 = (
    json.dumps(
        {
            "products": [
                {
                    "product_id": "",
                    "sku": "",
                    "category": "",
                    "name": "",
                    "brand": "",
                    "variant": "",
                    "price": 0,
                    "quantity": 1,
                    "coupon": "",
                    "position": 1,
                    "url": "https://",
                    "image_url": "https://",
                    "/images/products/": ".jpg",
                }
            ],
            "order_id": "",
            "checkout_id": "",
            "affiliation": "",
            "subtotal": 0,
            "shipping": 0,
            "tax": 0,
            "discount": 0,
            "coupon": "",
            "list_id": "",
            "step": 1,
            "shipping_method": "",
            "payment_method": "",
            "context": {
                "os": {"name": "iOS", "version": ""},
                "device": {"id": "", "manufacturer": "Apple", "model": "iPhone", "type": "ios"},
                "app": {"name": "", "version": "", "build": ""},
                "screen": {"width": 0, "height": 0, "density": 2},
                "network": {"wifi": True},
            },
            "userAgentData": {
                "brands": [
                    {"brand": "Chromium", "version": ""},
                    {"brand": "Google Chrome", "version": ""},
                    {"brand": "Not-A.Brand", "version": "99"},
                ],
                "mobile": False,
                "platform": "Windows",
            },
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.4 Mobile/15E148 Safari/604.1 (iPhone; CPU iPhone OS 17_4 like Mac OS X) "
            "(Linux; Android 14; Pixel 8) Firefox/125.0 Edg/124.0",
            "library": {"name": "analytics.js", "version": "npm:next-1."},
            "timezone": "America/New_York",
            "Europe/": "Asia/",
            "?utm_source=": "&utm_medium=",
            "&utm_campaign=": "&utm_content=",
        },
        separators=(",", ":"),
    ).encode()
    + _ZDICT_V1
)
_CODEC_PROFILE_V3 = b"\x03"
# Customer items (issue #15: a write is billed per KB started) hold the profile body, whose field names and layout
# are ours: v3 is a body with every field in `profile_to_item`'s order, Segment's spec event names, common traits,
# channels and campaign values; values are placeholders (a timestamp's shape, key prefixes). The most frequent
# strings come last.
_STAMP = "2026-01-01T00:00:00.000Z"
_EVENT_NAMES = dict.fromkeys(
    (
        "$$alias",
        "$$group",
        "$$screen",
        "Push Opened",
        "Signed In",
        "Signed Up",
        "Order Refunded",
        "Coupon Applied",
        "Payment Info Entered",
        "Checkout Step Completed",
        "Checkout Step Viewed",
        "Product Removed",
        "Cart Viewed",
        "Product Clicked",
        "Product List Viewed",
        "Products Searched",
        "Email Opened",
        "Email Link Clicked",
        "Checkout Started",
        "Order Completed",
        "$$identify",
        "Product Added",
        "Product Viewed",
        "$$page",
    ),
    1,
)
_ZDICT_PROFILE_V3 = json.dumps(
    {
        "customer_id": "u:",
        "identities": ["u:", "a:"],
        "user_id": "",
        "first_seen": _STAMP,
        "last_seen": _STAMP,
        "traits": {
            "email": "@gmail.com",
            "name": "",
            "first_name": "",
            "last_name": "",
            "firstName": "",
            "lastName": "",
            "phone": "",
            "plan": "",
            "company": "",
            "newsletter": True,
        },
        "trait_stamps": {"$$userId": f"{_STAMP}|", "email": f"{_STAMP}|", "name": f"{_STAMP}|"},
        "event_counts": _EVENT_NAMES,
        "orders": 0,
        "revenue": {"$d": "0"},
        "last_order_at": None,
        "daily": {_STAMP[:10]: {**_EVENT_NAMES, "$$revenue": {"$d": "0"}}},
        "carts": {
            "-": {
                "ordered": _STAMP,
                "products": {
                    "": {
                        "added": _STAMP,
                        "removed": None,
                        "item": {"name": "", "price": 0.0, "quantity": 1, "category": ""},
                    }
                },
            }
        },
        "first_touch": {
            "channel": "web",
            "at": _STAMP,
            "message_id": "",
            "campaign": {"name": "", "source": "google", "medium": "cpc", "term": "", "content": ""},
        },
        "last_touch": {
            "channel": "email",
            "at": _STAMP,
            "message_id": "",
            "campaign": {"name": "", "source": "newsletter", "medium": "email", "content": ""},
        },
        "engagement": {"social": {}, "push": {}, "app": {}, "ads": {}, "email": {}, "web": {}},
        "flags": {},
        "links": [],
        "merged_into": None,
        "applied": {"u:": "", "a:": ""},
        "scheduled": [1700000000],
    },
    separators=(",", ":"),
).encode()
_CODEC_CELLS_V4 = b"\x04"
# Analytics cells (on the customer item too) are JSON keyed by counter item keys (`<PK>\x1f<SK>`, see
# `shared.storage.analytics.cell_key`) holding counter names: v4 spells each kind of cell and counter, with the
# starter definitions' ids and events (infra/analytics/starters.json, which every table starts with).
_CELLS_DAY = "2026-01-01"
_RETURNS = {
    f"{kind}|{event}|0": 1 for kind in ("last", "on") for event in ("*", "Order Completed", "Product Viewed")
} | {"n": 1}
_CELLS_V4: dict[str, dict[str, int]] = {
    f"STATS#{_CELLS_DAY}\x1fE#0": {"e|Order Completed": 1, "e|Product Viewed": 1},
    f"STATS#{_CELLS_DAY}\x1fH12#0": {"m|1200": 1, "n": 1},
    f"FUNNEL#\x1fDAY#{_CELLS_DAY}#0": {"b|(none)|1": 1, "b|app|1": 1, "b|social|1": 1, "b|push|1": 1},
    f"FUNNEL#email_to_order\x1fDAY#{_CELLS_DAY}#0": {
        **{f"b|(other)|{step}": 1 for step in (1, 2, 3)},
        **{f"s|{step}": 1 for step in (1, 2, 3)},
    },
    **{f"FUNNEL#email_to_order\x1fDAY#{_CELLS_DAY}#T{step}#0": {f"t|{step}|1": 1} for step in (2, 3)},
    f"FUNNEL#purchase\x1fDAY#{_CELLS_DAY}#0": {
        "b|ads|1": 1,
        "b|email|1": 1,
        **{f"b|web|{step}": 1 for step in (1, 2, 3, 4)},
        **{f"s|{step}": 1 for step in (1, 2, 3, 4)},
    },
    **{f"FUNNEL#purchase\x1fDAY#{_CELLS_DAY}#T{step}#0": {f"t|{step}|1": 1} for step in (2, 3, 4)},
    f"RETENTION#day\x1f{_CELLS_DAY}#0": _RETURNS,
    f"RETENTION#week\x1f{_CELLS_DAY}#0": _RETURNS,
    **{f"TIMING\x1f{channel}#0": {f"h|{channel}|1": 1} for channel in ("ads", "email", "web")},
}
_ZDICT_CELLS_V4 = json.dumps(_CELLS_V4, separators=(",", ":")).encode()
_CODEC_CELLS_V5 = b"\x05"
# v5 (2026-12): a funnel's entry day is one cell, its steps' times in it (`shared.storage.analytics.cell_key`).
_STEP_TIMES = {"email_to_order": (2, 3), "purchase": (2, 3, 4)}
_ZDICT_CELLS_V5 = json.dumps(
    {
        key: counts
        | {f"t|{step}|1": 1 for step in _STEP_TIMES.get(key.partition("\x1f")[0].removeprefix("FUNNEL#"), ())}
        for key, counts in _CELLS_V4.items()
        if "#T" not in key
    },
    separators=(",", ":"),
).encode()
_ZDICTS = {
    _CODEC_ZLIB_V1: _ZDICT_V1,
    _CODEC_ZLIB_V2: _ZDICT_V2,
    _CODEC_PROFILE_V3: _ZDICT_PROFILE_V3,
    _CODEC_CELLS_V4: _ZDICT_CELLS_V4,
    _CODEC_CELLS_V5: _ZDICT_CELLS_V5,
}


def encode_json(value: Any, *, default: Callable[[Any], Any] | None = None) -> bytes:
    """Compress a JSON value for storage (an event body, or any other)."""
    return _deflate(_json_bytes(value, default), _CODEC_ZLIB_V2)


def encode_profile_json(value: Any, *, default: Callable[[Any], Any] | None = None) -> bytes:
    """Compress a customer item's profile body for storage (`decode_json` reads it back)."""
    return _deflate(_json_bytes(value, default), _CODEC_PROFILE_V3)


def decode_json(blob: bytes | str, *, object_hook: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """Inverse of `encode_json` and `encode_profile_json`, whichever codec wrote the blob (also takes the base64
    text a Lambda stream event carries)."""
    return json.loads(_inflate(binary(blob)), object_hook=object_hook)


def compress_cells(text: bytes) -> bytes:
    """Compress analytics cells' JSON for storage."""
    return _deflate(text, _CODEC_CELLS_V5)


def decompress_cells(data: bytes) -> bytes:
    """Inverse of `compress_cells`; also reads the cells stored before it, plain zlib (a zlib stream's first byte
    names its method, deflate, in its low four bits: 0x?8, never a codec byte)."""
    return _inflate(data) if data[:1] in _ZDICTS else zlib.decompress(data)


def _json_bytes(value: Any, default: Callable[[Any], Any] | None) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=default).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: escape them rather than fail
        return json.dumps(value, separators=(",", ":"), default=default).encode("ascii")


def _deflate(text: bytes, codec: bytes) -> bytes:
    compressor = zlib.compressobj(level=6, zdict=_ZDICTS[codec])
    return codec + compressor.compress(text) + compressor.flush()


def _inflate(data: bytes) -> bytes:
    if data[:1] not in _ZDICTS:
        raise ValueError("unknown body codec")
    decompressor = zlib.decompressobj(zdict=_ZDICTS[data[:1]])
    return decompressor.decompress(data[1:]) + decompressor.flush()


def binary(value: bytes | bytearray | str) -> bytes:
    """A binary attribute's bytes."""
    # Binary attributes are bytes from boto3, but base64 text in Lambda stream events (Powertools keeps it so).
    return base64.b64decode(value) if isinstance(value, str) else bytes(value)

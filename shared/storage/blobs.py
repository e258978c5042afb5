"""Compressed JSON blobs: how event and profile bodies are stored (zlib with preset dictionaries), and binary
attributes whatever their transport (bytes from boto3, base64 text in Lambda stream events)."""

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
_ZDICTS = {_CODEC_ZLIB_V1: _ZDICT_V1, _CODEC_ZLIB_V2: _ZDICT_V2}


def encode_json(value: Any, *, default: Callable[[Any], Any] | None = None) -> bytes:
    """Compress a JSON value for storage."""
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=default).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: escape them rather than fail
        text = json.dumps(value, separators=(",", ":"), default=default).encode("ascii")
    compressor = zlib.compressobj(level=6, zdict=_ZDICT_V2)
    return _CODEC_ZLIB_V2 + compressor.compress(text) + compressor.flush()


def decode_json(blob: bytes | str, *, object_hook: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """Inverse of `encode_json` (also takes the base64 text a Lambda stream event carries)."""
    data = binary(blob)
    if data[:1] not in _ZDICTS:
        raise ValueError("unknown body codec")
    decompressor = zlib.decompressobj(zdict=_ZDICTS[data[:1]])
    return json.loads(decompressor.decompress(data[1:]) + decompressor.flush(), object_hook=object_hook)


def binary(value: bytes | bytearray | str) -> bytes:
    """A binary attribute's bytes."""
    # Binary attributes are bytes from boto3, but base64 text in Lambda stream events (Powertools keeps it so).
    return base64.b64decode(value) if isinstance(value, str) else bytes(value)

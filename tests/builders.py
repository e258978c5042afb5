"""Test data builders: unique ids, Segment calls, sources."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from shared.domain.sources import Source, new_source


def random_ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def a_track(**overrides: Any) -> dict[str, Any]:
    """A Segment track call as an SDK sends it."""
    call: dict[str, Any] = {
        "type": "track",
        "event": "Product Viewed",
        "userId": random_ref("user"),
        "messageId": random_ref("msg"),
        "timestamp": "2026-11-29T10:00:00.000Z",
        "sentAt": "2026-11-29T10:00:01.000Z",
        "properties": {"product_id": "p-1", "price": 19.99, "category": "shoes"},
        "context": {"library": {"name": "analytics-python", "version": "2.3.3"}},
    }
    call.update(overrides)
    return call


def a_source(source_id: str = "web", **overrides: Any) -> tuple[Source, str]:
    """A source and its write key."""
    source, write_key = new_source(
        source_id=source_id, name=source_id.title(), created_at=datetime.now(UTC), token=secrets.token_urlsafe
    )
    if overrides:
        from dataclasses import replace

        source = replace(source, **overrides)
    return source, write_key


def cart_abandoners(segment_id: str = "abandoners", *, within: str = "1h") -> dict[str, Any]:
    """A segment of who added to a cart and did not order that cart within `within` (an absence rule)."""
    absence = {
        "did": {"event": "Product Added"},
        "then_not": {"event": "Order Completed"},
        "within": within,
        "match": ["cart_id"],
    }
    return {"id": segment_id, "rule": {"absence": absence}}
